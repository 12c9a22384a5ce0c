//! The console's words in Dutch and English (`console.language`, default Dutch).

use crate::{config::Language, review::report::Assessment};

/// Builds `Text`, one variant per text with its words in each language: a page that names a
/// text the table lacks does not compile, so no page ever shows a key instead of words.
macro_rules! texts {
    ($($key:ident: $nl:literal, $en:literal;)*) => {
        /// A text of the console, the board report and the case pages.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Text {
            $($key,)*
        }

        impl Text {
            /// Every text, in table order.
            pub const ALL: &[Text] = &[$(Text::$key,)*];

            /// The words for this text in `language`.
            pub fn words(self, language: Language) -> &'static str {
                match (self, language) {
                    $((Text::$key, Language::Nl) => $nl, (Text::$key, Language::En) => $en,)*
                }
            }
        }
    };
}

texts! {
    Title: "nxguard — verboden apps", "nxguard — banned apps";
    Overview: "Overzicht", "Overview";
    Devices: "Apparaten", "Devices";
    Device: "Apparaat", "Device";
    Cases: "Zaken", "Cases";
    Audit: "Auditlog", "Audit log";
    Logout: "Uitloggen", "Sign out";
    Login: "Inloggen", "Sign in";
    User: "Gebruikersnaam", "User name";
    Password: "Wachtwoord", "Password";
    LoginFailed: "Inloggen lukte niet: onjuiste gebruikersnaam of wachtwoord, of het account is tijdelijk geblokkeerd.", "Sign-in failed: wrong user name or password, or the account is locked for a while.";
    Locked: "Account tijdelijk geblokkeerd na te veel pogingen.", "Account locked for a while after too many attempts.";
    Period: "Periode", "Period";
    Since: "Vanaf", "Since";
    Until: "Tot", "Until";
    App: "App", "App";
    All: "alle", "all";
    Owner: "Eigenaar of afdeling", "Owner or department";
    Assessment: "Beoordeling", "Assessment";
    Search: "Zoeken", "Search";
    Apply: "Toepassen", "Apply";
    Days7: "7 dagen", "7 days";
    Days30: "30 dagen", "30 days";
    Days90: "90 dagen", "90 days";
    Attempts: "Pogingen", "Attempts";
    Domains: "Domeinen", "Domains";
    Days: "Dagen", "Days";
    FirstSeen: "Eerst gezien", "First seen";
    LastSeen: "Laatst gezien", "Last seen";
    Likely: "app waarschijnlijk geïnstalleerd", "app likely installed";
    Possibly: "app mogelijk geïnstalleerd", "app possibly installed";
    Link: "link of ingesloten inhoud", "link or embedded content";
    ByApp: "Apparaten per app en beoordeling", "Devices by app and assessment";
    RecentDevices: "Laatst geziene apparaten", "Most recently seen devices";
    AllDevices: "Alle apparaten", "All devices";
    Kinds: "Soorten treffers", "Kinds of hits";
    Lists: "Lijsten", "Lists";
    PolicyVersion: "Beleidsversie", "Policy version";
    Entries: "Regels", "Entries";
    Apps: "Apps", "Apps";
    Embedded: "ingebouwde lijsten", "embedded lists";
    ListFiles: "Lijstbestanden", "List files";
    Feeds: "Abonnementen (feeds)", "Feeds";
    Feed: "Feed", "Feed";
    LastSuccess: "Laatst gelukt", "Last success";
    LastAttempt: "Laatste poging", "Last attempt";
    FeedPending: "Kromp te veel; wacht op `nxguard lists accept`", "Shrank too much; waits for `nxguard lists accept`";
    Changed: "Gewijzigd", "Changed";
    BoardTitle: "Verboden apps op het netwerk", "Banned apps on the network";
    BoardIntro: "Apparaten die een verboden app probeerden te bereiken, naar hoe zeker het bewijs is: treffers op API- of telemetriedomeinen op twee of meer dagen betekenen dat de app zeer waarschijnlijk is geïnstalleerd; op één dag mogelijk; alleen web- en CDN-treffers wijzen meestal op een link of ingesloten video, tenzij ze dagenlang met 20 of meer per dag komen (dan telt het patroon).", "Devices that tried to reach a banned app, by how sure the evidence is: API or telemetry hits on two or more days mean the app is very likely installed; on one day, possibly; web and CDN hits alone usually mean a link or embedded video, unless they come 20 or more a day for days (then the pattern counts).";
    BoardNamed: "Dit rapport noemt apparaten: het bevat persoonsgegevens.", "This report names devices: it holds personal data.";
    BoardCounts: "Dit rapport bevat geen persoonsgegevens: alleen aantallen.", "This report holds no personal data: counts only.";
    DevicesPerDay: "Apparaten met pogingen per dag", "Devices with attempts per day";
    CasesByState: "Zaken per status", "Cases by state";
    WrittenBy: "Gemaakt door", "Written by";
    Users: "Gebruikers", "Users";
    Tokens: "API-tokens", "API tokens";
    LockedUntil: "Geblokkeerd tot", "Locked until";
    Trend: "Pogingen per dag", "Attempts per day";
    ToAct: "Actie nodig: waarschijnlijk geïnstalleerd, geen open zaak", "To act on: likely installed, no open case";
    Recurred: "Teruggekeerd na verwijdering", "Came back after removal";
    None: "Geen.", "None.";
    OpenCase: "Zaak openen", "Open a case";
    ExportCsv: "Exporteren (CSV)", "Export (CSV)";
    Identity: "Identiteit en bronnen", "Identity and its sources";
    Hostname: "Hostnaam (opgegeven door het apparaat)", "Hostname (as the device claims it)";
    Mac: "MAC", "MAC";
    Address: "Adres", "Address";
    Source: "Bron", "Source";
    PerApp: "Per app per dag", "Per app per day";
    Hits: "Treffers", "Hits";
    HitsLimited: "De nieuwste 200 treffers; de CSV-export bevat ze allemaal.", "The newest 200 hits; the CSV export holds them all.";
    Time: "Tijd", "Time";
    Name: "Naam", "Name";
    Kind: "Soort", "Kind";
    State: "Status", "State";
    Ticket: "Ticket", "Ticket";
    Note: "Notitie", "Note";
    RemovedOn: "Verwijderd op", "Removed on";
    Save: "Opslaan", "Save";
    RequestRemoval: "Verwijdering aanvragen", "Request removal";
    MarkRemoved: "Als verwijderd vastleggen", "Record as removed";
    RemovedAt: "Verwijderd om", "Removed at";
    Reason: "Reden", "Reason";
    CloseFalsePositive: "Sluiten als vals positief", "Close as a false positive";
    StOpen: "open", "open";
    StRemovalRequested: "verwijdering aangevraagd", "removal requested";
    StRemoved: "verwijderd", "removed";
    StVerified: "geverifieerd", "verified";
    StRecurred: "teruggekeerd", "recurred";
    StFalsePositive: "vals positief", "false positive";
    Case: "Zaak", "Case";
    Opened: "Aangemaakt", "Created";
    Expires: "Verloopt", "Expires";
    Disabled: "Uitgeschakeld", "Disabled";
    Domain: "Domein", "Domain";
    RoleViewer: "kijker", "viewer";
    RoleOfficer: "functionaris", "officer";
    RoleAdmin: "beheerder", "admin";
    RoleCli: "opdrachtregel", "command line";
    FigLikely: "apparaten met een app waarschijnlijk geïnstalleerd", "devices with an app likely installed";
    FigOpenCases: "open zaken", "open cases";
    FigRecurred: "teruggekeerd na verwijdering", "came back after removal";
    FigNew: "nieuw deze week", "new this week";
    Resolvers: "Resolvers", "Resolvers";
    Node: "Node", "Node";
    NoResolverAttempts: "Geen enkele resolver heeft de afgelopen week een poging vastgelegd. Controleer dat `nxguard serve` draait en naar deze opslag schrijft.", "No resolver recorded an attempt in the past week. Check that `nxguard serve` runs and writes to this store.";
    ResolversNote: "De laatste geblokkeerde poging per node in de afgelopen week: een node die hier ontbreekt, legt niets vast of zag geen verboden app.", "Each node's last blocked attempt in the past week: a node missing here records nothing or saw no banned app.";
    Totals: "Totalen per app", "Totals per app";
    TotalsDiffer: "De bronnen hierboven tellen alleen de losse pogingen, die store.raw_days dagen bewaard worden; de totalen tellen ook de dagtotalen van oudere dagen.", "The sources above count only the single attempts, kept store.raw_days days; the totals also count the daily totals of older days.";
    PreviousPeriod: "vorige periode", "previous period";
    ThisPeriod: "deze periode", "this period";
    Qtype: "Vraagtype", "Query type";
    DatePlaceholder: "JJJJ-MM-DD", "YYYY-MM-DD";
    Error: "Fout", "Error";
    Err400: "Dit verzoek klopt niet, bijvoorbeeld een datum, tijdstip of formulierveld. Ga terug en probeer het opnieuw.", "This request is not right, for example a date, time or form field. Go back and try again.";
    Err401: "Niet ingelogd of onbekend token.", "Not signed in, or an unknown token.";
    Err403: "Niet toegestaan voor uw rol, of het formulier is verlopen: laad de pagina opnieuw.", "Not allowed for your role, or the form expired: load the page again.";
    Err404: "Deze pagina of dit item bestaat niet.", "This page or item does not exist.";
    Err429: "Te veel mislukte inlogpogingen vanaf dit adres. Probeer het over tien minuten opnieuw.", "Too many failed sign-ins from this address. Try again in ten minutes.";
    ErrUnreachable: "De bewijsopslag of de consoledatabase is nu niet bereikbaar; de andere pagina's werken. Probeer het zo opnieuw; blijft het zo, kijk dan naar de database en store.url.", "The evidence store or the console database cannot be reached now; the other pages work. Try again shortly; if it stays so, check the database and store.url.";
    Err503: "Er is nog geen pogingenopslag: geen enkele resolver heeft nog iets vastgelegd. Start `nxguard serve` met hetzelfde store.path, of controleer dat pad.", "There is no attempt store yet: no resolver has recorded anything. Start `nxguard serve` with the same store.path, or check that path.";
    Err500: "Er ging iets mis. De details staan in het log van de console.", "Something went wrong. The details are in the console's log.";
    Actor: "Wie", "Who";
    Action: "Actie", "Action";
    Target: "Waarop", "On what";
    Detail: "Details", "Details";
    Role: "Rol", "Role";
    Pseudonymous: "Apparaatsleutels zijn pseudoniem voor uw rol.", "Device keys are pseudonymous for your role.";
    Forbidden: "Niet toegestaan voor uw rol.", "Not allowed for your role.";
    NoData: "Geen pogingen in deze periode.", "No attempts in this period.";
}

/// The words for `text` in `language`.
pub fn t(language: Language, text: Text) -> &'static str {
    text.words(language)
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
    let text = match assessment {
        Assessment::LikelyInstalled => Text::Likely,
        Assessment::PossiblyInstalled => Text::Possibly,
        Assessment::LinkOrEmbedded => Text::Link,
    };
    t(language, text)
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
    fn every_text_has_both_languages() {
        for text in Text::ALL {
            assert!(!text.words(Language::Nl).is_empty() && !text.words(Language::En).is_empty(), "{text:?}");
        }
        assert_eq!(t(Language::Nl, Text::Devices), "Apparaten");
        assert_eq!(t(Language::En, Text::Devices), "Devices");
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
