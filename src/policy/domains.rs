//! Domain list files (`domains/*.txt`): one banned app per file, its vendor, its sources and its
//! domains. See `domains/README.md` for the format.
//!
//! Owns: parsing and checking list files, and the copies of the shipped lists compiled into
//! the binary. Does not own: matching (see `matcher`).

use std::{collections::HashMap, fmt, path::Path};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The shipped lists, compiled in so that `nxguard serve` works without any file on disk.
pub const BUILTIN: &[(&str, &str)] = &[
    ("camscanner", include_str!("../../domains/camscanner.txt")),
    ("capcut", include_str!("../../domains/capcut.txt")),
    ("lemon8", include_str!("../../domains/lemon8.txt")),
    ("pinduoduo", include_str!("../../domains/pinduoduo.txt")),
    ("shareit", include_str!("../../domains/shareit.txt")),
    ("shein", include_str!("../../domains/shein.txt")),
    ("temu", include_str!("../../domains/temu.txt")),
    ("tiktok", include_str!("../../domains/tiktok.txt")),
    ("turbovpn", include_str!("../../domains/turbovpn.txt")),
    ("ucbrowser", include_str!("../../domains/ucbrowser.txt")),
    ("wechat", include_str!("../../domains/wechat.txt")),
];

/// The bypass-resistance categories (`[bypass]` in the config), compiled in: (id, list text).
pub const BYPASS: &[(&str, &str)] = &[
    ("firefox-canary", include_str!("../../domains/bypass/firefox-canary.txt")),
    ("private-relay", include_str!("../../domains/bypass/private-relay.txt")),
    ("ddr", include_str!("../../domains/bypass/ddr.txt")),
    ("public-resolvers", include_str!("../../domains/bypass/public-resolvers.txt")),
];

/// Names a municipality needs to keep resolving (`domains/must-resolve.txt`): no shipped list
/// blocks one (tested), and `check` warns when a feed or a local list would.
pub const MUST_RESOLVE: &str = include_str!("../../domains/must-resolve.txt");

/// The file in `domains/` (and in a `domains_dir` copied from it) that is not an app list.
pub const MUST_RESOLVE_FILE: &str = "must-resolve.txt";

/// The names of a must-resolve file: one per line, `#` comments.
pub fn must_resolve(text: &str) -> Vec<&str> {
    text.lines().map(|l| l.split('#').next().unwrap_or_default().trim()).filter(|l| !l.is_empty()).collect()
}

/// What a domain is used for: tells the security officer how strong a hit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// App backend: API, login, messaging, configuration. A hit means the app runs.
    Api,
    /// SDK analytics and logging the app sends in the background. A hit means the app runs.
    Telemetry,
    /// Static, image and video content, used by the app and by web pages alike.
    Cdn,
    /// Public website, storefront or short link: a hit may be one clicked link.
    Web,
    /// A CDN alias seen only inside CNAME chains.
    Alias,
    /// Not stated (lists added by the operator).
    #[default]
    Unspecified,
}

impl Kind {
    fn parse(word: &str) -> Option<Kind> {
        Some(match word {
            "api" => Kind::Api,
            "telemetry" => Kind::Telemetry,
            "cdn" => Kind::Cdn,
            "web" => Kind::Web,
            "alias" => Kind::Alias,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Api => "api",
            Kind::Telemetry => "telemetry",
            Kind::Cdn => "cdn",
            Kind::Web => "web",
            Kind::Alias => "alias",
            Kind::Unspecified => "unspecified",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub domain: String,
    pub kind: Kind,
    /// Blocks this one host only, not its subdomains.
    pub exact: bool,
    pub sources: Vec<String>,
    pub line: usize,
}

#[derive(Debug, Clone)]
pub struct AppList {
    /// The file stem, used in the config's `apps` list.
    pub id: String,
    pub name: String,
    pub vendor: String,
    pub sources: Vec<(String, String)>,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{origin}:{line}: {problem}")]
pub struct ListError {
    pub origin: String,
    pub line: usize,
    pub problem: String,
}

/// Checks a domain in presentation form: lowercase letters, digits, '-' and '_', labels of
/// 1–63 octets not starting or ending with '-', at most 253 octets, at least two labels.
pub fn check_domain(name: &str) -> Result<(), String> {
    if name.len() > crate::dns::wire::MAX_NAME_TEXT {
        return Err(format!("{name:?} is longer than 253 characters"));
    }
    if !name.contains('.') {
        return Err(format!("{name:?} has a single label; a whole top-level domain is never listed"));
    }
    for label in name.split('.') {
        let ok_chars = label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if label.is_empty() || label.len() > 63 || !ok_chars || label.starts_with('-') || label.ends_with('-') {
            return Err(format!("{name:?} is not a valid lowercase domain name (label {label:?})"));
        }
    }
    Ok(())
}

/// One entry as read from a list line, borrowing the line's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef<'t> {
    pub domain: &'t str,
    pub kind: Kind,
    pub exact: bool,
    /// The source ids before the comment's colon, comma-separated ("" when none).
    pub sources: &'t str,
    pub line: usize,
}

impl EntryRef<'_> {
    fn to_entry(self) -> Entry {
        let sources = self.sources.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
        Entry { domain: self.domain.to_string(), kind: self.kind, exact: self.exact, sources, line: self.line }
    }
}

/// Reads a list file one line at a time: the header directives and the problems are kept, each
/// entry is handed back as it is read. Loading a large list through it allocates nothing per
/// entry (`policy::load` feeds the entries straight into the matcher).
pub struct Reader {
    list: AppList,
    origin: String,
    line: usize,
    errors: Vec<ListError>,
}

impl Reader {
    pub fn new(id: &str, origin: &str) -> Reader {
        let list = AppList {
            id: id.to_string(),
            name: String::new(),
            vendor: String::new(),
            sources: Vec::new(),
            entries: Vec::new(),
        };
        Reader { list, origin: origin.to_string(), line: 0, errors: Vec::new() }
    }

    fn fail(&mut self, problem: String) {
        self.errors.push(ListError { origin: self.origin.clone(), line: self.line, problem });
    }

    /// Reads the file's next line (its line ending may be left on); returns the entry on it, if
    /// the line holds a well-formed one.
    pub fn line<'t>(&mut self, raw: &'t str) -> Option<EntryRef<'t>> {
        self.line += 1;
        let (body, comment) = raw.split_once('#').unwrap_or((raw, ""));
        let body = body.trim();
        if body.is_empty() {
            return None;
        }
        if let Some(directive) = body.strip_prefix('@') {
            self.directive(directive);
            return None;
        }
        let mut words = body.split_whitespace();
        let domain = words.next().unwrap_or_default();
        if let Err(problem) = check_domain(domain) {
            self.fail(problem);
            return None;
        }
        let mut entry = EntryRef { domain, kind: Kind::Unspecified, exact: false, sources: "", line: self.line };
        for word in words {
            match (word, Kind::parse(word)) {
                ("exact", _) if !entry.exact => entry.exact = true,
                (_, Some(kind)) if entry.kind == Kind::Unspecified => entry.kind = kind,
                _ => self.fail(format!("unexpected word {word:?} (expected a kind or `exact`)")),
            }
        }
        if let Some((ids, _note)) = comment.split_once(':') {
            entry.sources = ids;
        }
        Some(entry)
    }

    fn directive(&mut self, directive: &str) {
        let (key, value) = directive.split_once(char::is_whitespace).unwrap_or((directive, ""));
        let value = value.trim();
        let list = &mut self.list;
        match key {
            "app" if list.name.is_empty() && !value.is_empty() => list.name = value.to_string(),
            "vendor" if list.vendor.is_empty() && !value.is_empty() => list.vendor = value.to_string(),
            "source" => match value.split_once(char::is_whitespace) {
                Some((sid, what)) => list.sources.push((sid.to_string(), what.trim().to_string())),
                None => self.fail("@source needs an id and a description".into()),
            },
            "app" | "vendor" => self.fail(format!("@{key} is given twice or is empty")),
            _ => self.fail(format!("unknown directive @{key}")),
        }
    }

    /// The list's header (id, name, vendor, sources; no entries), or every problem found.
    pub fn finish(mut self) -> Result<AppList, Vec<ListError>> {
        self.line = 0;
        if self.list.name.is_empty() {
            self.fail("missing @app line".into());
        }
        if self.list.vendor.is_empty() {
            self.fail("missing @vendor line".into());
        }
        if self.errors.is_empty() { Ok(self.list) } else { Err(self.errors) }
    }
}

/// Parses one list file; every problem is reported, each with its line.
pub fn parse(id: &str, text: &str, origin: &str) -> Result<AppList, Vec<ListError>> {
    let mut reader = Reader::new(id, origin);
    let entries: Vec<Entry> = text.lines().filter_map(|raw| reader.line(raw)).map(EntryRef::to_entry).collect();
    let mut list = reader.finish()?;
    list.entries = entries;
    Ok(list)
}

/// Reads a list file line by line through `reader`, handing each entry to `entry`. Only one
/// line is held at a time, so a million-entry list costs no more memory than a short one.
pub fn read_file(path: &Path, reader: &mut Reader, mut entry: impl FnMut(EntryRef<'_>)) -> std::io::Result<()> {
    use std::io::BufRead;
    let mut file = std::io::BufReader::with_capacity(64 << 10, std::fs::File::open(path)?);
    let mut line = String::new();
    loop {
        line.clear();
        if file.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if let Some(found) = reader.line(line.trim_end_matches(['\n', '\r'])) {
            entry(found);
        }
    }
}

/// The `*.txt` list files in a directory (but `must-resolve.txt`), sorted by file name, each with
/// its id (the stem).
pub fn list_files(dir: &Path) -> Result<Vec<(String, std::path::PathBuf)>, ListError> {
    let io_error = |e: std::io::Error| ListError { origin: dir.display().to_string(), line: 0, problem: e.to_string() };
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(io_error)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .filter(|p| p.file_name().is_none_or(|name| name != MUST_RESOLVE_FILE))
        .collect();
    paths.sort();
    Ok(paths.into_iter().map(|p| (p.file_stem().unwrap_or_default().to_string_lossy().into_owned(), p)).collect())
}

/// Stricter checks for curated lists (the shipped ones): sorted, unique, a kind and a declared
/// source on every entry, and no entry already covered by another entry of the same file.
pub fn lint(list: &AppList, origin: &str) -> Vec<ListError> {
    let mut problems = Vec::new();
    let mut fail =
        |line: usize, problem: String| problems.push(ListError { origin: origin.to_string(), line, problem });
    for pair in list.entries.windows(2) {
        if pair[0].domain >= pair[1].domain {
            fail(pair[1].line, format!("{} is out of order or repeated", pair[1].domain));
        }
    }
    let suffix_entries: HashMap<&str, Kind> =
        list.entries.iter().filter(|e| !e.exact).map(|e| (e.domain.as_str(), e.kind)).collect();
    for entry in &list.entries {
        if entry.kind == Kind::Unspecified {
            fail(entry.line, format!("{} has no kind", entry.domain));
        }
        if entry.sources.is_empty() {
            fail(entry.line, format!("{} names no source", entry.domain));
        }
        for source in &entry.sources {
            if !list.sources.iter().any(|(id, _)| id == source) {
                fail(entry.line, format!("source {source:?} has no @source line"));
            }
        }
        // A narrower entry of another kind is not redundant: it says what the host is for
        // (`thtk.temu.com telemetry` under `temu.com web`), and the matcher takes the most specific.
        let covered = parents(&entry.domain).find(|parent| suffix_entries.get(parent) == Some(&entry.kind));
        if let Some(parent) = covered {
            fail(entry.line, format!("{} is already blocked by {parent}", entry.domain));
        }
    }
    problems
}

/// The proper parent domains of `name`: `a.b.c` gives `b.c`, then `c`.
fn parents(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices('.').map(move |(i, _)| &name[i + 1..])
}

/// Reads every `*.txt` list in a directory, sorted by file name.
pub fn read_dir(dir: &Path) -> Result<Vec<AppList>, Vec<ListError>> {
    let mut lists = Vec::new();
    let mut errors = Vec::new();
    for (id, path) in list_files(dir).map_err(|e| vec![e])? {
        let origin = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(text) => match parse(&id, &text, &origin) {
                Ok(list) => lists.push(list),
                Err(mut e) => errors.append(&mut e),
            },
            Err(e) => errors.push(ListError { origin, line: 0, problem: e.to_string() }),
        }
    }
    if errors.is_empty() { Ok(lists) } else { Err(errors) }
}

/// The shipped lists, parsed.
pub fn builtin() -> Vec<AppList> {
    BUILTIN
        .iter()
        .map(|(id, text)| parse(id, text, &format!("domains/{id}.txt")).expect("shipped lists are tested to parse"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "# test\n@app Test App\n@vendor Test Vendor\n@source s1 somewhere\n\
                        a.example api # s1: backend\nb.example web exact # s1: site\n";

    #[test]
    fn parses_directives_and_entries() {
        let list = parse("test", GOOD, "test.txt").unwrap();
        assert_eq!(list.name, "Test App");
        assert_eq!(list.vendor, "Test Vendor");
        assert_eq!(list.entries.len(), 2);
        assert_eq!(list.entries[1].kind, Kind::Web);
        assert!(list.entries[1].exact);
        assert_eq!(list.entries[0].sources, vec!["s1"]);
        assert!(lint(&list, "test.txt").is_empty());
    }

    #[test]
    fn reports_every_problem_with_its_line() {
        let text = "@app X\nBAD.example api\nok.example api bogus\n@nonsense\n";
        let errors = parse("x", text, "x.txt").unwrap_err();
        let lines: Vec<_> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 0], "{errors:?}");
        assert!(errors[0].to_string().starts_with("x.txt:2:"));
    }

    #[test]
    fn lint_catches_order_duplicates_and_covered_entries() {
        let text = "@app X\n@vendor Y\n@source s z\nb.example api # s: n\na.example api # s: n\n\
                    x.b.example api # s: n\ny.b.example telemetry # s: n\nc.example # t: n\n";
        let list = parse("x", text, "x.txt").unwrap();
        let problems: Vec<_> = lint(&list, "x.txt").iter().map(|p| p.problem.clone()).collect();
        assert!(problems.iter().any(|p| p.contains("a.example is out of order")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("x.b.example is already blocked by b.example")));
        assert!(!problems.iter().any(|p| p.contains("y.b.example")), "another kind refines: {problems:?}");
        assert!(problems.iter().any(|p| p.contains("c.example has no kind")));
        assert!(problems.iter().any(|p| p.contains("source \"t\" has no @source line")));
    }

    #[test]
    fn domain_check_rejects_bad_names() {
        assert!(check_domain("tiktok.com").is_ok());
        assert!(check_domain("_dns.resolver.arpa").is_ok());
        for bad in ["com", "Tiktok.com", "-a.com", "a..com", "a.com.", "a b.com"] {
            assert!(check_domain(bad).is_err(), "{bad}");
        }
    }
}
