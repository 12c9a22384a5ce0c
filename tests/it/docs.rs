//! The docs stay true to the code: every ```toml block under docs/ (and in the README) is a
//! config that loads, every key the config accepts is named in the configuration reference,
//! and the manual pages are what the code and the reference generate (regenerate them with
//! `UPDATE_MAN=1 cargo test --test it docs::`).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use nxguard::config::Config;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The Markdown files under docs/, and the README.
fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![repo("README.md")];
    let mut dirs = vec![repo("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files
}

/// The contents of the fenced blocks of `language` in `text`.
fn blocks<'a>(text: &'a str, language: &str) -> Vec<&'a str> {
    let fence = format!("```{language}\n");
    text.split(fence.as_str()).skip(1).filter_map(|b| b.split("```").next()).collect()
}

#[test]
fn every_toml_block_in_the_docs_is_a_config_that_loads() {
    let mut seen = 0;
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for block in blocks(&text, "toml") {
            let config = Config::from_toml(block).unwrap_or_else(|e| panic!("{}: {e}\n{block}", file.display()));
            nxguard::policy::load(&config.policy).unwrap();
            seen += 1;
        }
    }
    assert!(seen > 0, "no ```toml block found under docs/");
}

/// A config key: the table it is in (`""`, `server`, `upstream.servers`) and its name.
type Key = (String, String);

/// The keys a table accepts, from serde's answer to an unknown key (`deny_unknown_fields`);
/// `None` when `opener` does not open a table of fields.
fn fields(opener: &str) -> Option<Vec<String>> {
    let probe = format!("{opener}nxguard_probe_key = 1\n");
    let message = Config::from_toml(&probe).err()?.to_string();
    let expected = message.split("unknown field `nxguard_probe_key`, expected ").nth(1)?;
    let expected = expected.lines().next()?.trim_start_matches("one of ");
    let fields = expected.split(", ").flat_map(|f| f.split(" or ")).map(|f| f.trim_matches('`').to_owned());
    Some(fields.collect())
}

/// Every key of the Config type, walked table by table (arrays of tables included).
fn config_keys() -> (Vec<Key>, Vec<String>) {
    let (mut keys, mut tables) = (Vec::new(), Vec::new());
    let mut todo = vec![(String::new(), String::new(), String::new())];
    while let Some((path, arrays, opener)) = todo.pop() {
        for field in fields(&opener).unwrap_or_else(|| panic!("{path}: no fields")) {
            let child = if path.is_empty() { field.clone() } else { format!("{path}.{field}") };
            let table = format!("{arrays}[{child}]\n");
            let array = format!("{arrays}[[{child}]]\n");
            if fields(&table).is_some() {
                tables.push(format!("[{child}]"));
                todo.push((child, arrays.clone(), table));
            } else if fields(&array).is_some() {
                tables.push(format!("[[{child}]]"));
                todo.push((child, array.clone(), array));
            } else {
                keys.push((path.clone(), field));
            }
        }
    }
    (keys, tables)
}

#[test]
fn every_config_key_is_in_the_configuration_reference() {
    let reference = std::fs::read_to_string(repo("docs/operator/configuration.md")).unwrap();
    let sections: Vec<&str> = reference.split("\n## ").skip(1).collect();
    let (keys, tables) = config_keys();
    assert!(keys.len() > 90, "only {} keys found: {keys:?}", keys.len());
    let mut missing = Vec::new();
    for table in &tables {
        let bare = table.trim_matches(['[', ']']);
        if !sections.iter().any(|s| names(s, bare, None)) {
            missing.push(format!("table {table}"));
        }
    }
    for (table, key) in &keys {
        if !sections.iter().any(|s| names(s, table, Some(key))) {
            missing.push(format!("{table}.{key}"));
        }
    }
    assert!(missing.is_empty(), "not in docs/operator/configuration.md: {missing:?}");
}

/// Whether a reference section names `key` of `table` (or, without a key, the table itself):
/// as a row of the table's own section (`| `key``), or of an enclosing table's section with
/// the path between them (`| `servers[].address``, `| `zones[].servers[].path``).
fn names(section: &str, table: &str, key: Option<&str>) -> bool {
    let heading = section.lines().next().unwrap_or("");
    let segments: Vec<&str> = table.split('.').filter(|s| !s.is_empty()).collect();
    (0..=segments.len()).any(|split| {
        let (outer, inner) = segments.split_at(split);
        let outer = outer.join(".");
        let in_section = heading.contains(&format!("`[{outer}]`")) || heading.contains(&format!("`[[{outer}]]`"));
        let mut row: Vec<String> = inner.iter().map(|s| format!("{s}[]")).collect();
        match key {
            Some(key) => row.push(key.to_owned()),
            None if row.is_empty() => return in_section,
            None => {
                let last = row.pop().unwrap_or_default();
                row.push(last.trim_end_matches("[]").to_owned());
            }
        }
        let row = format!("| `{}`", row.join("."));
        in_section && section.lines().any(|l| l.starts_with(&row))
    })
}

/// Compares `actual` with the checked-in `path`, or writes it with `UPDATE_MAN=1`.
fn assert_current(path: &str, actual: &str) {
    let path = repo(path);
    if std::env::var_os("UPDATE_MAN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(actual == expected, "{} is stale; regenerate with UPDATE_MAN=1", path.display());
}

#[test]
fn nxguard_8_is_generated_from_the_command_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_nxguard")).arg("manpage").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let page = String::from_utf8(out.stdout).unwrap();
    for command in ["serve", "check", "report", "console", "case", "lists", "pseudonym", "selftest"] {
        assert!(page.contains(&format!(".SS \"nxguard {command}\"")), "{command}");
    }
    assert_current("docs/man/nxguard.8", &page);
}

#[test]
fn nxguard_toml_5_is_generated_from_the_configuration_reference() {
    let reference = std::fs::read_to_string(repo("docs/operator/configuration.md")).unwrap();
    let page = roff_of_reference(&reference);
    assert!(page.contains(".SH \"[SERVER]\""), "{page}");
    assert_current("docs/man/nxguard.toml.5", &page);
}

/// The configuration reference as a manual page: its sections, tables as tagged paragraphs,
/// code blocks unfilled.
fn roff_of_reference(markdown: &str) -> String {
    let mut out = String::from(
        ".TH NXGUARD.TOML 5 \"\" \"nxguard\"\n.SH NAME\nnxguard.toml \\- the configuration file of nxguard(8)\n.SH DESCRIPTION\n",
    );
    let mut in_code = false;
    for line in markdown.lines().skip(1) {
        if line.starts_with("```") {
            out.push_str(if in_code { ".fi\n" } else { ".nf\n" });
            in_code = !in_code;
        } else if in_code {
            out.push_str(&format!("{}\n", escape(line)));
        } else if let Some(heading) = line.strip_prefix("## ") {
            out.push_str(&format!(".SH \"{}\"\n", escape(&plain(heading)).to_uppercase()));
        } else if line.starts_with("| ---") || line.starts_with("| key |") {
        } else if let Some(row) = line.strip_prefix("| ") {
            let cells: Vec<&str> = row.trim_end_matches(" |").splitn(3, " | ").collect();
            if let [key, default, meaning] = cells[..] {
                out.push_str(&format!(
                    ".TP\n\\fB{}\\fR (default: {})\n{}\n",
                    escape(&plain(key)),
                    escape(&plain(default)),
                    escape(&plain(meaning))
                ));
            }
        } else if line.is_empty() {
            out.push_str(".PP\n");
        } else {
            out.push_str(&format!("{}\n", escape(&plain(line))));
        }
    }
    out
}

/// Markdown inline marks removed: code spans, bold, links (their text kept).
fn plain(text: &str) -> String {
    let text = text.replace('`', "").replace("**", "");
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find('[') {
        let Some(mid) = rest[start..].find("](").map(|m| start + m) else { break };
        let Some(end) = rest[mid..].find(')').map(|e| mid + e) else { break };
        out.push_str(&rest[..start]);
        out.push_str(&rest[start + 1..mid]);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Text safe in a roff line: backslashes and hyphens escaped, never a control character first.
fn escape(text: &str) -> String {
    let text = text.replace('\\', "\\e").replace('-', "\\-");
    if text.starts_with(['.', '\'']) { format!("\\&{text}") } else { text }
}

/// The README's `nxguard check` example shows the counts the shipped catalogue really has
/// (`check` on the embedded default configuration loads the same lists as deploy/nxguard.toml).
#[test]
fn the_readme_check_example_counts_the_shipped_catalogue() {
    let output = Command::new(env!("CARGO_BIN_EXE_nxguard")).arg("check").output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let ok = stdout.lines().find(|line| line.starts_with("ok: ")).expect("check prints an ok line");
    let counts = ok.split(", policy version").next().unwrap();
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    assert!(
        readme.contains(&format!("# {counts}, policy version")),
        "README's check example must read `# {counts}, policy version …`"
    );
}
