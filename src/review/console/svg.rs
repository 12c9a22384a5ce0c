//! Charts drawn by hand as inline SVG: no script, nothing fetched, printable.

use maud::{Markup, html};

use super::queries::day_text;

const WIDTH: u32 = 720;
const HEIGHT: u32 = 160;

/// Bars per day from `first_day` to `last_day` (UTC day numbers); days without a value are 0.
pub fn daily_bars(values: &[(i64, u64)], first_day: i64, last_day: i64, label: &str) -> Markup {
    let days = (last_day - first_day + 1).max(1) as u32;
    let max = values.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let slot = f64::from(WIDTH - 40) / f64::from(days);
    let plot = f64::from(HEIGHT - 30);
    html! {
        svg class="chart" viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label=(label) {
            title { (label) }
            line x1="40" y1=(HEIGHT - 20) x2=(WIDTH) y2=(HEIGHT - 20) class="axis" {}
            text x="36" y="12" text-anchor="end" class="tick" { (max) }
            text x="36" y=(HEIGHT - 20) text-anchor="end" class="tick" { "0" }
            @for (day, value) in values.iter().filter(|(d, _)| (first_day..=last_day).contains(d)) {
                @let h = plot * (*value as f64) / (max as f64);
                @let x = 40.0 + slot * ((day - first_day) as f64);
                rect x=(format!("{x:.1}")) y=(format!("{:.1}", f64::from(HEIGHT - 20) - h)) width=(format!("{:.1}", (slot - 1.0).max(1.0))) height=(format!("{h:.1}")) class="bar" {
                    title { (day_text(*day)) ": " (value) }
                }
            }
            text x="40" y=(HEIGHT - 4) class="tick" { (day_text(first_day)) }
            text x=(WIDTH) y=(HEIGHT - 4) text-anchor="end" class="tick" { (day_text(last_day)) }
        }
    }
}

/// One lane per app, a cell per day shaded by its attempts: when each app was active.
pub fn app_lanes(rows: &[(String, i64, u64)], first_day: i64, last_day: i64, label: &str) -> Markup {
    let mut apps: Vec<&str> = rows.iter().map(|(a, _, _)| a.as_str()).collect();
    apps.dedup();
    let days = (last_day - first_day + 1).max(1) as u32;
    let slot = f64::from(WIDTH - 120) / f64::from(days);
    let lane = 22u32;
    let height = lane * apps.len().max(1) as u32 + 20;
    let max = rows.iter().map(|(_, _, n)| *n).max().unwrap_or(1).max(1) as f64;
    html! {
        svg class="chart" viewBox=(format!("0 0 {WIDTH} {height}")) role="img" aria-label=(label) {
            title { (label) }
            @for (i, app) in apps.iter().enumerate() {
                @let y = lane * i as u32;
                text x="0" y=(y + 15) class="tick" { (app) }
                line x1="120" y1=(y + lane - 2) x2=(WIDTH) y2=(y + lane - 2) class="axis" {}
                @for (_, day, n) in rows.iter().filter(|(a, d, _)| a == app && (first_day..=last_day).contains(d)) {
                    @let x = 120.0 + slot * ((day - first_day) as f64);
                    rect x=(format!("{x:.1}")) y=(y + 3) width=(format!("{:.1}", (slot - 1.0).max(1.0))) height=(lane - 6) class="bar" opacity=(format!("{:.2}", 0.25 + 0.75 * (*n as f64) / max)) {
                        title { (app) " " (day_text(*day)) ": " (n) }
                    }
                }
            }
            text x="120" y=(height - 4) class="tick" { (day_text(first_day)) }
            text x=(WIDTH) y=(height - 4) text-anchor="end" class="tick" { (day_text(last_day)) }
        }
    }
}
