//! The console's words in Dutch and English (`console.language`, default Dutch).

use crate::{config::Language, review::report::Assessment};

/// (key, Dutch, English).
const TEXTS: &[(&str, &str, &str)] = &[
    ("title", "nxguard — verboden apps", "nxguard — banned apps"),
    ("overview", "Overzicht", "Overview"),
    ("devices", "Apparaten", "Devices"),
    ("device", "Apparaat", "Device"),
    ("cases", "Zaken", "Cases"),
    ("audit", "Auditlog", "Audit log"),
    ("logout", "Uitloggen", "Sign out"),
    ("login", "Inloggen", "Sign in"),
    ("user", "Gebruikersnaam", "User name"),
    ("password", "Wachtwoord", "Password"),
    (
        "login_failed",
        "Inloggen lukte niet: onjuiste gebruikersnaam of wachtwoord, of het account is tijdelijk geblokkeerd.",
        "Sign-in failed: wrong user name or password, or the account is locked for a while.",
    ),
    (
        "locked",
        "Account tijdelijk geblokkeerd na te veel pogingen.",
        "Account locked for a while after too many attempts.",
    ),
    ("period", "Periode", "Period"),
    ("since", "Vanaf", "Since"),
    ("until", "Tot", "Until"),
    ("app", "App", "App"),
    ("all", "alle", "all"),
    ("owner", "Eigenaar of afdeling", "Owner or department"),
    ("assessment", "Beoordeling", "Assessment"),
    ("search", "Zoeken", "Search"),
    ("apply", "Toepassen", "Apply"),
    ("days7", "7 dagen", "7 days"),
    ("days30", "30 dagen", "30 days"),
    ("days90", "90 dagen", "90 days"),
    ("attempts", "Pogingen", "Attempts"),
    ("domains", "Domeinen", "Domains"),
    ("days", "Dagen", "Days"),
    ("first_seen", "Eerst gezien", "First seen"),
    ("last_seen", "Laatst gezien", "Last seen"),
    ("likely", "app waarschijnlijk geïnstalleerd", "app likely installed"),
    ("possibly", "app mogelijk geïnstalleerd", "app possibly installed"),
    ("link", "link of ingesloten inhoud", "link or embedded content"),
    ("by_app", "Apparaten per app en beoordeling", "Devices by app and assessment"),
    ("recent_devices", "Laatst geziene apparaten", "Most recently seen devices"),
    ("all_devices", "Alle apparaten", "All devices"),
    ("kinds", "Soorten treffers", "Kinds of hits"),
    ("lists", "Lijsten", "Lists"),
    ("policy_version", "Beleidsversie", "Policy version"),
    ("entries", "Regels", "Entries"),
    ("apps", "Apps", "Apps"),
    ("embedded", "ingebouwde lijsten", "embedded lists"),
    ("list_files", "Lijstbestanden", "List files"),
    ("feeds", "Abonnementen (feeds)", "Feeds"),
    ("feed", "Feed", "Feed"),
    ("last_success", "Laatst gelukt", "Last success"),
    ("last_attempt", "Laatste poging", "Last attempt"),
    (
        "feed_pending",
        "Kromp te veel; wacht op `nxguard lists accept`",
        "Shrank too much; waits for `nxguard lists accept`",
    ),
    ("changed", "Gewijzigd", "Changed"),
    ("board_title", "Verboden apps op het netwerk", "Banned apps on the network"),
    (
        "board_intro",
        "Apparaten die een verboden app probeerden te bereiken, naar hoe zeker het bewijs is: treffers op API- of telemetriedomeinen op twee of meer dagen betekenen dat de app zeer waarschijnlijk is geïnstalleerd; op één dag mogelijk; alleen web- en CDN-treffers wijzen meestal op een link of ingesloten video, tenzij ze dagenlang met 20 of meer per dag komen (dan telt het patroon).",
        "Devices that tried to reach a banned app, by how sure the evidence is: API or telemetry hits on two or more days mean the app is very likely installed; on one day, possibly; web and CDN hits alone usually mean a link or embedded video, unless they come 20 or more a day for days (then the pattern counts).",
    ),
    (
        "board_named",
        "Dit rapport noemt apparaten: het bevat persoonsgegevens.",
        "This report names devices: it holds personal data.",
    ),
    (
        "board_counts",
        "Dit rapport bevat geen persoonsgegevens: alleen aantallen.",
        "This report holds no personal data: counts only.",
    ),
    ("devices_per_day", "Apparaten met pogingen per dag", "Devices with attempts per day"),
    ("cases_by_state", "Zaken per status", "Cases by state"),
    ("written_by", "Gemaakt door", "Written by"),
    ("users", "Gebruikers", "Users"),
    ("tokens", "API-tokens", "API tokens"),
    ("locked_until", "Geblokkeerd tot", "Locked until"),
    ("trend", "Pogingen per dag", "Attempts per day"),
    (
        "to_act",
        "Actie nodig: waarschijnlijk geïnstalleerd, geen open zaak",
        "To act on: likely installed, no open case",
    ),
    ("recurred", "Teruggekeerd na verwijdering", "Came back after removal"),
    ("none", "Geen.", "None."),
    ("open_case", "Zaak openen", "Open a case"),
    ("export_csv", "Exporteren (CSV)", "Export (CSV)"),
    ("identity", "Identiteit en bronnen", "Identity and its sources"),
    ("hostname", "Hostnaam (opgegeven door het apparaat)", "Hostname (as the device claims it)"),
    ("mac", "MAC", "MAC"),
    ("address", "Adres", "Address"),
    ("source", "Bron", "Source"),
    ("per_app", "Per app per dag", "Per app per day"),
    ("hits", "Treffers", "Hits"),
    (
        "hits_limited",
        "De nieuwste 200 treffers; de CSV-export bevat ze allemaal.",
        "The newest 200 hits; the CSV export holds them all.",
    ),
    ("time", "Tijd", "Time"),
    ("name", "Naam", "Name"),
    ("kind", "Soort", "Kind"),
    ("state", "Status", "State"),
    ("ticket", "Ticket", "Ticket"),
    ("note", "Notitie", "Note"),
    ("removed_on", "Verwijderd op", "Removed on"),
    ("save", "Opslaan", "Save"),
    ("request_removal", "Verwijdering aanvragen", "Request removal"),
    ("mark_removed", "Als verwijderd vastleggen", "Record as removed"),
    ("removed_at", "Verwijderd om", "Removed at"),
    ("reason", "Reden", "Reason"),
    ("close_false_positive", "Sluiten als vals positief", "Close as a false positive"),
    ("st_open", "open", "open"),
    ("st_removal_requested", "verwijdering aangevraagd", "removal requested"),
    ("st_removed", "verwijderd", "removed"),
    ("st_verified", "geverifieerd", "verified"),
    ("st_recurred", "teruggekeerd", "recurred"),
    ("st_false_positive", "vals positief", "false positive"),
    ("case", "Zaak", "Case"),
    ("opened", "Aangemaakt", "Created"),
    ("expires", "Verloopt", "Expires"),
    ("disabled", "Uitgeschakeld", "Disabled"),
    ("domain", "Domein", "Domain"),
    ("role_viewer", "kijker", "viewer"),
    ("role_officer", "functionaris", "officer"),
    ("role_admin", "beheerder", "admin"),
    ("role_cli", "opdrachtregel", "command line"),
    ("fig_likely", "apparaten met een app waarschijnlijk geïnstalleerd", "devices with an app likely installed"),
    ("fig_open_cases", "open zaken", "open cases"),
    ("fig_recurred", "teruggekeerd na verwijdering", "came back after removal"),
    ("fig_new", "nieuw deze week", "new this week"),
    ("resolvers", "Resolvers", "Resolvers"),
    ("node", "Node", "Node"),
    (
        "no_resolver_attempts",
        "Geen enkele resolver heeft de afgelopen week een poging vastgelegd. Controleer dat `nxguard serve` draait en naar deze opslag schrijft.",
        "No resolver recorded an attempt in the past week. Check that `nxguard serve` runs and writes to this store.",
    ),
    (
        "resolvers_note",
        "De laatste geblokkeerde poging per node in de afgelopen week: een node die hier ontbreekt, legt niets vast of zag geen verboden app.",
        "Each node's last blocked attempt in the past week: a node missing here records nothing or saw no banned app.",
    ),
    ("totals", "Totalen per app", "Totals per app"),
    (
        "totals_differ",
        "De bronnen hierboven tellen alleen de losse pogingen, die store.raw_days dagen bewaard worden; de totalen tellen ook de dagtotalen van oudere dagen.",
        "The sources above count only the single attempts, kept store.raw_days days; the totals also count the daily totals of older days.",
    ),
    ("previous_period", "vorige periode", "previous period"),
    ("this_period", "deze periode", "this period"),
    ("qtype", "Vraagtype", "Query type"),
    ("date_placeholder", "JJJJ-MM-DD", "YYYY-MM-DD"),
    ("error", "Fout", "Error"),
    (
        "err_400",
        "Dit verzoek klopt niet, bijvoorbeeld een datum, tijdstip of formulierveld. Ga terug en probeer het opnieuw.",
        "This request is not right, for example a date, time or form field. Go back and try again.",
    ),
    ("err_401", "Niet ingelogd of onbekend token.", "Not signed in, or an unknown token."),
    (
        "err_403",
        "Niet toegestaan voor uw rol, of het formulier is verlopen: laad de pagina opnieuw.",
        "Not allowed for your role, or the form expired: load the page again.",
    ),
    ("err_404", "Deze pagina of dit item bestaat niet.", "This page or item does not exist."),
    (
        "err_429",
        "Te veel mislukte inlogpogingen vanaf dit adres. Probeer het over tien minuten opnieuw.",
        "Too many failed sign-ins from this address. Try again in ten minutes.",
    ),
    (
        "err_unreachable",
        "De bewijsopslag of de consoledatabase is nu niet bereikbaar; de andere pagina's werken. Probeer het zo opnieuw; blijft het zo, kijk dan naar de database en store.url.",
        "The evidence store or the console database cannot be reached now; the other pages work. Try again shortly; if it stays so, check the database and store.url.",
    ),
    (
        "err_503",
        "Er is nog geen pogingenopslag: geen enkele resolver heeft nog iets vastgelegd. Start `nxguard serve` met hetzelfde store.path, of controleer dat pad.",
        "There is no attempt store yet: no resolver has recorded anything. Start `nxguard serve` with the same store.path, or check that path.",
    ),
    (
        "err_500",
        "Er ging iets mis. De details staan in het log van de console.",
        "Something went wrong. The details are in the console's log.",
    ),
    ("actor", "Wie", "Who"),
    ("action", "Actie", "Action"),
    ("target", "Waarop", "On what"),
    ("detail", "Details", "Details"),
    ("role", "Rol", "Role"),
    ("pseudonymous", "Apparaatsleutels zijn pseudoniem voor uw rol.", "Device keys are pseudonymous for your role."),
    ("forbidden", "Niet toegestaan voor uw rol.", "Not allowed for your role."),
    ("no_data", "Geen pogingen in deze periode.", "No attempts in this period."),
];

/// The text for `key` in `language` (the key itself when unknown, so a gap shows).
pub fn t(language: Language, key: &'static str) -> &'static str {
    match TEXTS.iter().find(|(k, _, _)| *k == key) {
        Some((_, nl, en)) => match language {
            Language::Nl => nl,
            Language::En => en,
        },
        None => key,
    }
}

const MONTHS_NL: [&str; 12] = ["jan", "feb", "mrt", "apr", "mei", "jun", "jul", "aug", "sep", "okt", "nov", "dec"];
const MONTHS_EN: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// A UTC time as stored and exported (RFC 3339, `2026-12-03T07:07:00Z`) as a person reads it
/// in `zone`: `3 dec 2026 08:07` in Dutch, `3 Dec 2026 08:07` in English. Anything else (an
/// empty cell) is shown as it is.
pub fn local_time(language: Language, zone: &jiff::tz::TimeZone, utc: &str) -> String {
    let Ok(time) = utc.parse::<jiff::Timestamp>() else { return utc.to_string() };
    let local = time.to_zoned(zone.clone());
    let months = match language {
        Language::Nl => &MONTHS_NL,
        Language::En => &MONTHS_EN,
    };
    let month = months[usize::from(local.month().unsigned_abs()).clamp(1, 12) - 1];
    format!("{} {month} {} {:02}:{:02}", local.day(), local.year(), local.hour(), local.minute())
}

/// Audit actions as stored (English, stable for exports and tools) and in Dutch.
const AUDIT_ACTIONS: &[(&str, &str)] = &[
    ("login", "ingelogd"),
    ("login failed", "inloggen mislukt"),
    ("login locked", "inloggen geweigerd: account geblokkeerd"),
    ("login disabled", "inloggen geweigerd: account uitgeschakeld"),
    ("login throttled", "inloggen van dit adres tijdelijk geweigerd"),
    ("login throttle ended", "weigering van dit adres beëindigd"),
    ("logout", "uitgelogd"),
    ("view device", "apparaat bekeken"),
    ("view audit", "auditlog bekeken"),
    ("export summary", "overzicht geëxporteerd"),
    ("export timeline", "tijdlijn geëxporteerd"),
    ("export audit", "auditlog geëxporteerd"),
    ("case open", "zaak aangemaakt"),
    ("case update", "zaak gewijzigd"),
    ("case state", "zaakstatus automatisch gewijzigd"),
    ("user add", "gebruiker toegevoegd of wachtwoord gewijzigd"),
    ("user disable", "gebruiker uitgeschakeld"),
    ("user enable", "gebruiker weer ingeschakeld"),
    ("user delete", "gebruiker verwijderd"),
    ("token add", "API-token aangemaakt"),
    ("token revoke", "API-token ingetrokken"),
    ("api summary", "API: overzicht"),
    ("api timeline", "API: tijdlijn"),
    ("api cases", "API: zaken"),
];

/// The words in stored audit details, in Dutch (longest first, so phrases go before words).
const AUDIT_WORDS: &[(&str, &str)] = &[
    ("failed sign-ins from this address; refused until", "mislukte inlogpogingen vanaf dit adres; geweigerd tot"),
    ("attempts since the removal", "pogingen sinds de verwijdering"),
    ("sign-ins refused", "inlogpogingen geweigerd"),
    ("removal_requested", "verwijdering aangevraagd"),
    ("request_removal", "verwijdering aangevraagd"),
    ("false_positive", "vals positief"),
    ("expires never", "verloopt nooit"),
    ("expires", "verloopt"),
    ("recurred", "teruggekeerd"),
    ("verified", "geverifieerd"),
    ("removed", "verwijderd"),
    ("rows", "rijen"),
    ("case", "zaak"),
    ("since", "vanaf"),
    ("note", "notitie"),
    ("open", "open"),
    ("viewer", "kijker"),
    ("officer", "functionaris"),
    ("admin", "beheerder"),
];

/// An audit row's action as a person reads it in `language`.
pub fn audit_action(language: Language, action: &str) -> String {
    match (language, AUDIT_ACTIONS.iter().find(|(en, _)| *en == action)) {
        (Language::Nl, Some((_, nl))) => (*nl).to_string(),
        _ => action.to_string(),
    }
}

/// An audit row's detail as a person reads it in `language`: the stored words translated,
/// names, numbers and times kept as they are.
pub fn audit_detail(language: Language, detail: &str) -> String {
    if language == Language::En {
        return detail.to_string();
    }
    let mut out = String::with_capacity(detail.len());
    let mut rest = detail;
    'next: while let Some(c) = rest.chars().next() {
        let at_word = out.chars().last().is_none_or(|p| !p.is_alphanumeric() && p != '_');
        if at_word {
            for (en, nl) in AUDIT_WORDS {
                let Some(after) = rest.strip_prefix(en) else { continue };
                if after.chars().next().is_none_or(|n| !n.is_alphanumeric() && n != '_') {
                    out.push_str(nl);
                    rest = &rest[en.len()..];
                    continue 'next;
                }
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out.replace(" -> ", " → ")
}

/// The words for one of `report`'s assessments.
pub fn assessment(language: Language, assessment: Assessment) -> &'static str {
    t(language, assessment.key())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_local_in_the_languages_usual_form() {
        let amsterdam = jiff::tz::TimeZone::get("Europe/Amsterdam").unwrap();
        assert_eq!(local_time(Language::Nl, &amsterdam, "2026-12-03T07:07:00Z"), "3 dec 2026 08:07");
        assert_eq!(local_time(Language::En, &amsterdam, "2026-12-03T07:07:00Z"), "3 Dec 2026 08:07");
        // Summer time: UTC+2.
        assert_eq!(local_time(Language::Nl, &amsterdam, "2026-07-01T06:00:00Z"), "1 jul 2026 08:00");
        // Across midnight, and the month names of every month.
        assert_eq!(local_time(Language::Nl, &amsterdam, "2026-03-31T23:30:00Z"), "1 apr 2026 01:30");
        assert_eq!(local_time(Language::Nl, &amsterdam, "2026-05-04T10:00:00Z"), "4 mei 2026 12:00");
        assert_eq!(local_time(Language::En, &jiff::tz::TimeZone::UTC, "2026-10-09T10:00:00Z"), "9 Oct 2026 10:00");
        assert_eq!(local_time(Language::Nl, &amsterdam, ""), "");
    }

    #[test]
    fn every_key_is_unique_and_has_both_languages() {
        for (i, (key, nl, en)) in TEXTS.iter().enumerate() {
            assert!(!nl.is_empty() && !en.is_empty(), "{key}");
            assert!(TEXTS[i + 1..].iter().all(|(k, _, _)| k != key), "{key} twice");
        }
        assert_eq!(t(Language::Nl, "devices"), "Apparaten");
        assert_eq!(t(Language::En, "devices"), "Devices");
    }

    #[test]
    fn audit_rows_read_in_dutch_with_names_and_times_kept() {
        assert_eq!(audit_action(Language::Nl, "case update"), "zaak gewijzigd");
        assert_eq!(audit_action(Language::En, "case update"), "case update");
        assert_eq!(
            audit_detail(Language::Nl, "open -> removal_requested; request_removal"),
            "open → verwijdering aangevraagd; verwijdering aangevraagd"
        );
        assert_eq!(
            audit_detail(Language::Nl, "removed -> recurred (3 attempts since the removal)"),
            "verwijderd → teruggekeerd (3 pogingen sinds de verwijdering)"
        );
        assert_eq!(audit_detail(Language::Nl, "since=7d&app=TikTok; 2 rows"), "vanaf=7d&app=TikTok; 2 rijen");
        assert_eq!(
            audit_detail(Language::Nl, "LT-0001 × TikTok; ticket \"INC-7\""),
            "LT-0001 × TikTok; ticket \"INC-7\""
        );
        assert_eq!(audit_detail(Language::Nl, "reopened"), "reopened", "only whole words");
    }
}
