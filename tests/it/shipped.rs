//! The files we ship load and follow their rules: domain lists, deploy configs, the docs'
//! config example and the embedded default.

use std::path::{Path, PathBuf};

use nxguard::{
    config::Config,
    policy::{self, domains},
};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn every_domain_list_parses_and_passes_lint() {
    let lists = domains::read_dir(&repo("domains")).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(lists.len(), 11, "one file per banned app");
    for list in &lists {
        let origin = format!("domains/{}.txt", list.id);
        let problems = domains::lint(list, &origin);
        assert!(problems.is_empty(), "{problems:#?}");
        assert!(!list.entries.is_empty(), "{origin} is empty");
    }
}

#[test]
fn bypass_lists_parse_and_pass_lint() {
    for (id, text) in domains::BYPASS {
        let origin = format!("domains/bypass/{id}.txt");
        let list = domains::parse(id, text, &origin).unwrap_or_else(|e| panic!("{e:#?}"));
        let problems = domains::lint(&list, &origin);
        assert!(problems.is_empty(), "{problems:#?}");
        let on_disk = std::fs::read_to_string(repo(&origin)).unwrap();
        assert_eq!(&on_disk, text, "{origin} differs from the compiled-in copy; rebuild");
    }
}

#[test]
fn compiled_in_lists_are_the_files_on_disk() {
    let on_disk = domains::read_dir(&repo("domains")).unwrap();
    let builtin = domains::builtin();
    assert_eq!(on_disk.len(), builtin.len());
    for (disk, compiled) in on_disk.iter().zip(&builtin) {
        assert_eq!(disk.id, compiled.id);
        assert_eq!(disk.entries, compiled.entries, "{} differs; rebuild", disk.id);
    }
}

#[test]
fn do_not_block_rows_stay_out() {
    let policy = policy::load(&nxguard::config::PolicyConfig::default()).unwrap();
    for name in [
        "qpic.cn",
        "x.qpic.cn",
        "qlogo.cn",
        "map.qq.com",
        "lbs.gtimg.com",
        "iot-tencent.com",
        "qq.com",
        "akamaized.net",
        "zendesk.com",
        "appsflyersdk.com",
    ] {
        assert!(policy.lookup_text(name).is_none(), "{name} must not be blocked");
    }
    for name in ["mmbiz.qpic.cn", "wx.qlogo.cn", "innovativeconnecting.zendesk.com"] {
        assert!(policy.lookup_text(name).is_some(), "{name} must be blocked");
    }
}

#[test]
fn embedded_default_config_loads_with_every_app() {
    let config = Config::embedded();
    let policy = policy::load(&config.policy).unwrap();
    assert_eq!(policy.apps().len(), 11 + 3, "the app lists and the bypass categories on by default");
    assert!(policy.len() > 250);
}

#[test]
fn deploy_configs_load() {
    let mut seen = 0;
    for entry in std::fs::read_dir(repo("deploy")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let mut config = Config::read(&path).unwrap_or_else(|e| panic!("{e}"));
            if config.policy.domains_dir.is_some() {
                config.policy.domains_dir = Some(repo("domains"));
            }
            policy::load(&config.policy).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            seen += 1;
        }
    }
    assert!(seen >= 1, "deploy/ has no config example");
}

#[test]
fn readme_config_example_parses() {
    let readme = std::fs::read_to_string(repo("docs/operator/configuration.md")).unwrap();
    let start = readme.find("```toml\n").expect("README has a ```toml example") + "```toml\n".len();
    let end = start + readme[start..].find("```").unwrap();
    let config = Config::from_toml(&readme[start..end]).unwrap_or_else(|e| panic!("README example: {e}"));
    policy::load(&config.policy).unwrap();
}
