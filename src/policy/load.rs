//! Building the policy the config asks for: the enforced lists, the feeds' last good copies, the
//! extra domains and the allow exceptions, each entry tagged with the list or feed it came from.
//!
//! Owns: `load`, which reads only files (compiled-in lists, `domains_dir`, `policy.cache_dir`):
//! start-up and reloads never wait for the network. Does not own: the matcher (`matcher`),
//! downloading feeds (`fetch`), or the client groups' addresses (the server resolves them).

use tracing::warn;

use crate::{
    config::PolicyConfig,
    policy::{
        domains::{self, EntryRef, Kind, ListError, Reader},
        feeds::{self, Line},
        matcher::{App, Policy, PolicyBuilder},
    },
};

/// Why a policy could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("domain lists have {} problem(s):\n{}", .0.len(), .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Lists(Vec<ListError>),
    #[error("policy.apps names unknown list(s) {unknown:?}; available: {available:?}")]
    UnknownApps { unknown: Vec<String>, available: Vec<String> },
    #[error("{key} names unknown app(s) {unknown:?}; available: {available:?}")]
    UnknownAppsIn { key: &'static str, unknown: Vec<String>, available: Vec<String> },
    #[error("policy.feeds: the name of a category feed is its app id, and {0:?} is already an app's id")]
    FeedNameIsAnApp(Vec<String>),
}

/// The category of the operator's own `policy.extra` domains.
pub const LOCAL_APP_ID: &str = "local";

/// A content hash of the entries read from one list (FNV-1a), for its rule's version.
struct EntryHash(u64);

impl EntryHash {
    fn new() -> EntryHash {
        EntryHash(0xcbf2_9ce4_8422_2325)
    }

    fn add(&mut self, e: &EntryRef<'_>) {
        let tail = [b' ', e.kind as u8, u8::from(e.exact), b'\n'];
        for &b in e.domain.as_bytes().iter().chain(&tail) {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn text(&self) -> String {
        format!("{:012x}", self.0 >> 16)
    }
}

/// A feed's last good copy, read before the lists so that its allow entries come first.
struct FeedCopy<'c> {
    feed: &'c crate::config::FeedConfig,
    text: String,
    version: String,
}

/// Reads the feeds' cached copies; a feed without one is left out, with a warning.
fn feed_copies(config: &PolicyConfig) -> Vec<FeedCopy<'_>> {
    let Some(dir) = &config.cache_dir else {
        return Vec::new();
    };
    let statuses = feeds::read_statuses(dir);
    let mut copies = Vec::new();
    for feed in &config.feeds {
        let path = feeds::copy_path(dir, &feed.name);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let hash = feeds::hash(text.as_bytes());
                let status = statuses.get(&feed.name).filter(|s| s.hash.as_deref() == Some(hash.as_str()));
                let version = status
                    .and_then(|s| s.etag.as_deref())
                    .map(|e| e.trim_start_matches("W/").trim_matches('"').to_string());
                copies.push(FeedCopy { feed, text, version: version.unwrap_or(hash) });
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                warn!(feed = %feed.name, url = %feed.url, "feed has no cached copy yet; starting without it until it downloads");
            }
            Err(error) => {
                warn!(feed = %feed.name, path = %path.display(), %error, "cannot read the feed's cached copy; starting without it");
            }
        }
    }
    copies
}

/// Builds the policy the config asks for: the enforced lists (built in, or read from
/// `domains_dir`), the feeds' cached copies, the extra domains and the allow exceptions.
///
/// Lists stream into the matcher line by line: a million-entry file never exists in memory as
/// parsed entries, only as the matcher's arena and table. Lists not enforced are still read, so
/// a broken file is reported whichever apps are chosen. Allow entries go in first: the first
/// entry for a name wins.
pub fn load(config: &PolicyConfig) -> Result<Policy, PolicyError> {
    let sources = list_sources(config)?;
    let copies = feed_copies(config);
    let mut builder = PolicyBuilder::new();
    for name in &config.allow {
        builder.allow(name);
    }
    for copy in &copies {
        feeds::scan(copy.feed.format, &copy.text, |line| {
            if let Line::Allow(name) = line {
                builder.allow(&name);
            }
        });
    }
    let mut errors: Vec<ListError> = Vec::new();
    for (id, source) in &sources {
        if let Err(mut e) = add_list(&mut builder, config, id, source) {
            errors.append(&mut e);
        }
    }
    if !errors.is_empty() {
        return Err(PolicyError::Lists(errors));
    }
    let available: Vec<String> = sources.iter().map(|(id, _)| id.clone()).collect();
    if let Some(apps) = &config.apps {
        let unknown: Vec<String> = apps.iter().filter(|a| !available.contains(a)).cloned().collect();
        if !unknown.is_empty() {
            return Err(PolicyError::UnknownApps { unknown, available });
        }
    }
    check_app_ids(config, &available)?;
    add_bypass(&mut builder, config)?;
    if !config.extra.is_empty() {
        let app = builder.app(App::new(LOCAL_APP_ID, "Local policy", "the network operator"));
        builder.set_rule(app, "config:policy.extra", mode_of(config, LOCAL_APP_ID));
        for name in &config.extra {
            builder.block(name, app, Kind::Unspecified, false);
        }
    }
    for copy in &copies {
        add_feed(&mut builder, copy);
    }
    Ok(builder.build())
}

/// Where an app list comes from.
enum Source {
    File(std::path::PathBuf),
    Builtin(&'static str),
}

/// The app lists, by id: the files of `domains_dir`, or the built-in lists.
fn list_sources(config: &PolicyConfig) -> Result<Vec<(String, Source)>, PolicyError> {
    Ok(match &config.domains_dir {
        Some(dir) => domains::list_files(dir)
            .map_err(|e| PolicyError::Lists(vec![e]))?
            .into_iter()
            .map(|(id, path)| (id, Source::File(path)))
            .collect(),
        None => domains::BUILTIN.iter().map(|(id, text)| (id.to_string(), Source::Builtin(text))).collect(),
    })
}

/// The mode of app `id` (`policy.app_modes`, enforce by default).
fn mode_of(config: &PolicyConfig, id: &str) -> crate::config::ListMode {
    config.app_modes.get(id).copied().unwrap_or_default()
}

/// Streams one app list into the builder (its entries only when the app is enforced; a list not
/// enforced is still read, so that its problems are reported).
fn add_list(
    builder: &mut PolicyBuilder,
    config: &PolicyConfig,
    id: &str,
    source: &Source,
) -> Result<(), Vec<ListError>> {
    let enforced = config.apps.as_ref().is_none_or(|apps| apps.iter().any(|a| a == id));
    let (origin, rule) = match source {
        Source::File(path) => (path.display().to_string(), format!("file:{}", path.display())),
        Source::Builtin(_) => (format!("domains/{id}.txt"), format!("builtin:{id}")),
    };
    let mut reader = Reader::new(id, &origin);
    // Registered before the header is read (directives may come anywhere), named after.
    let app = enforced.then(|| builder.app(App::new(id, "", "")));
    let mut hash = EntryHash::new();
    let mut block = |e: EntryRef<'_>| {
        if let Some(app) = app {
            hash.add(&e);
            builder.block(e.domain, app, e.kind, e.exact);
        }
    };
    match source {
        Source::File(path) => {
            if let Err(e) = domains::read_file(path, &mut reader, &mut block) {
                return Err(vec![ListError { origin, line: 0, problem: e.to_string() }]);
            }
        }
        Source::Builtin(text) => text.lines().filter_map(|raw| reader.line(raw)).for_each(&mut block),
    }
    let list = reader.finish()?;
    if let Some(app) = app {
        builder.describe_app(app, &list.name, &list.vendor);
        builder.set_rule(app, &format!("{rule}@{}", hash.text()), mode_of(config, id));
    }
    Ok(())
}

/// The bypass-resistance categories the config enables, each as an app of its own.
fn add_bypass(builder: &mut PolicyBuilder, config: &PolicyConfig) -> Result<(), PolicyError> {
    for (id, response) in config.bypass.enabled() {
        let text = domains::BYPASS.iter().find(|(bypass, _)| *bypass == id).map(|(_, text)| *text).unwrap_or_default();
        let list = domains::parse(id, text, &format!("domains/bypass/{id}.txt")).map_err(PolicyError::Lists)?;
        let app = builder.app(App { response, ..App::new(id, &list.name, &list.vendor) });
        builder.set_rule(app, &format!("builtin:bypass/{id}@{}", feeds::hash(text.as_bytes())), mode_of(config, id));
        for entry in &list.entries {
            builder.block(&entry.domain, app, entry.kind, entry.exact);
        }
    }
    Ok(())
}

/// A feed's blocked names, under its app (skipped when that app is not enforced) or as a
/// category of its own.
fn add_feed(builder: &mut PolicyBuilder, copy: &FeedCopy<'_>) {
    let feed = copy.feed;
    let rule = format!("feed:{}@{}", feed.name, copy.version);
    let origin = match (&feed.app, &feed.category) {
        (Some(app), _) => match builder.find_app(app) {
            Some(of) => builder.origin(of, &rule, feed.mode),
            None => return,
        },
        (None, category) => {
            let name = category.as_deref().unwrap_or(&feed.name);
            let origin = builder.app(App::new(&feed.name, name, &format!("feed {}", feed.name)));
            builder.set_rule(origin, &rule, feed.mode);
            origin
        }
    };
    feeds::scan(feed.format, &copy.text, |line| {
        if let Line::Block(name) = line {
            builder.block(&name, origin, feed.kind, false);
        }
    });
}

/// `app_modes` and the feeds' `app` must name lists this policy enforces.
fn check_app_ids(config: &PolicyConfig, available: &[String]) -> Result<(), PolicyError> {
    let known = |id: &str| {
        let enforced = config.apps.as_ref().is_none_or(|apps| apps.iter().any(|a| a == id));
        (available.iter().any(|a| a == id) && enforced)
            || config.bypass.enabled().iter().any(|(b, _)| *b == id)
            || id == LOCAL_APP_ID
    };
    let mut enforced: Vec<String> = available.iter().filter(|a| known(a)).cloned().collect();
    enforced.sort();
    let unknown: Vec<String> = config.app_modes.keys().filter(|id| !known(id)).cloned().collect();
    if !unknown.is_empty() {
        return Err(PolicyError::UnknownAppsIn { key: "policy.app_modes", unknown, available: enforced });
    }
    let unknown: Vec<String> = config.feeds.iter().filter_map(|f| f.app.clone()).filter(|id| !known(id)).collect();
    if !unknown.is_empty() {
        return Err(PolicyError::UnknownAppsIn { key: "policy.feeds[].app", unknown, available: enforced });
    }
    // A category feed's name is its app id: it must not pass for a list's app in the evidence.
    let taken = |id: &str| available.iter().any(|a| a == id) || known(id);
    let clashes: Vec<String> =
        config.feeds.iter().filter(|f| f.category.is_some() && taken(&f.name)).map(|f| f.name.clone()).collect();
    if !clashes.is_empty() {
        return Err(PolicyError::FeedNameIsAnApp(clashes));
    }
    Ok(())
}

/// Names that must keep resolving, and which of them `policy` would block (name, rule).
pub fn blocked_must_resolve<'p>(policy: &'p Policy, names: &[&str]) -> Vec<(String, &'p str)> {
    names.iter().filter_map(|name| policy.lookup_text(name).map(|m| (name.to_string(), &**m.rule))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ListMode;

    #[test]
    fn streamed_lists_load_like_parsed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let text = "@app Test App\n@vendor V\na.example api\n\nb.example web exact # s: x\r\n";
        std::fs::write(dir.path().join("t.txt"), text).unwrap();
        let config = PolicyConfig { domains_dir: Some(dir.path().into()), ..Default::default() };
        let p = load(&config).unwrap();
        let m = p.lookup_text("x.a.example").unwrap();
        assert_eq!((m.app.app.name.as_str(), m.app.app.vendor.as_str()), ("Test App", "V"));
        assert!(m.rule.starts_with(&format!("file:{}@", dir.path().join("t.txt").display())), "{}", m.rule);
        assert!(p.lookup_text("b.example").unwrap().exact);
        assert!(p.lookup_text("x.b.example").is_none());
        std::fs::write(dir.path().join("t.txt"), "@app T\nBAD.example\n").unwrap();
        let Err(PolicyError::Lists(errors)) = load(&config) else { panic!("broken list loaded") };
        assert_eq!(errors.iter().map(|e| e.line).collect::<Vec<_>>(), vec![2, 0], "{errors:?}");
    }

    #[test]
    fn feeds_load_from_their_copies_with_their_rule_mode_and_allows() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(feeds::copy_path(dir.path(), "tt"), "||new-tiktok.example^\n@@||www.tiktok.com^\n").unwrap();
        std::fs::write(feeds::copy_path(dir.path(), "gamble"), "casino.example\n").unwrap();
        let toml = format!(
            "cache_dir = {:?}\napp_modes = {{ temu = \"log-only\" }}\n\
             [[feeds]]\nname = \"tt\"\nurl = \"https://x.example/l\"\nformat = \"adblock\"\napp = \"tiktok\"\nkind = \"api\"\n\
             [[feeds]]\nname = \"gamble\"\nurl = \"file:///x\"\ncategory = \"Gambling\"\nmode = \"log-only\"\n\
             [[feeds]]\nname = \"absent\"\nurl = \"file:///y\"\ncategory = \"None yet\"\n",
            dir.path()
        );
        let config: PolicyConfig = toml::from_str(&toml).unwrap();
        let p = load(&config).unwrap();
        let m = p.lookup_text("a.new-tiktok.example").unwrap();
        assert_eq!((m.app.app.id.as_str(), m.kind, m.mode), ("tiktok", Kind::Api, ListMode::Enforce));
        assert!(m.rule.starts_with("feed:tt@"), "{}", m.rule);
        assert!(p.lookup_text("www.tiktok.com").is_none(), "a feed's allow entry beats the shipped list");
        assert!(p.lookup_text("tiktok.com").unwrap().rule.starts_with("builtin:tiktok@"));
        let m = p.lookup_text("casino.example").unwrap();
        assert_eq!((m.app.app.id.as_str(), m.app.app.name.as_str(), m.mode), ("gamble", "Gambling", ListMode::LogOnly));
        assert_eq!(p.lookup_text("temu.com").unwrap().mode, ListMode::LogOnly);
        let bad: PolicyConfig = toml::from_str("app_modes = { nosuch = \"log-only\" }").unwrap();
        assert!(matches!(load(&bad), Err(PolicyError::UnknownAppsIn { .. })));
        let clash = "[[feeds]]\nname = \"wechat\"\nurl = \"file:///x\"\ncategory = \"Mine\"\n";
        assert!(matches!(load(&toml::from_str(clash).unwrap()), Err(PolicyError::FeedNameIsAnApp(_))));
    }

    #[test]
    fn the_shipped_catalogue_blocks_no_must_resolve_name() {
        let policy = load(&PolicyConfig::default()).unwrap();
        let names = domains::must_resolve(domains::MUST_RESOLVE);
        assert!(names.len() > 100, "{}", names.len());
        assert_eq!(blocked_must_resolve(&policy, &names), vec![]);
        let extra = PolicyConfig { extra: vec!["office.com".into()], ..Default::default() };
        let policy = load(&extra).unwrap();
        let blocked = blocked_must_resolve(&policy, &names);
        assert!(blocked.iter().any(|(n, rule)| n == "www.office.com" && *rule == "config:policy.extra"), "{blocked:?}");
    }
}
