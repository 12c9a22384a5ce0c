//! The `nxguard` binary's commands, run as a user would.

use std::process::Command;

fn nxguard(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nxguard")).args(args).output().unwrap()
}

#[test]
fn check_accepts_the_embedded_default() {
    let out = nxguard(&["check"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: 14 apps"));
}

#[test]
fn check_reports_every_problem_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[access]\nallow = []\n[[upstream.servers]]\naddress = \"192.0.2.1:853\"\nprotocol = \"tls\"\n",
    )
    .unwrap();
    let out = nxguard(&["check", "--config", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.toml has 2 problem(s)"), "{stderr}");
    assert!(stderr.contains("access.allow: no client networks"), "{stderr}");
    assert!(stderr.contains("upstream.servers[0].tls_name: required"), "{stderr}");
}

#[test]
fn check_reports_syntax_errors_with_line_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.toml");
    std::fs::write(&path, "[cache]\nmax_entries = \"many\"\n").unwrap();
    let out = nxguard(&["check", "--config", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("typo.toml") && stderr.contains("line 2"), "{stderr}");
    // The cause is said once, though the error both words it and carries it as its source.
    assert_eq!(stderr.matches("TOML parse error").count(), 1, "{stderr}");
}

#[test]
fn check_reports_broken_domain_lists() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.txt"), "@app Bad\n@vendor V\nNot_A..Domain api\n").unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!("[policy]\ndomains_dir = {:?}\n[[upstream.servers]]\naddress = \"127.0.0.1:53\"\n", dir.path()),
    )
    .unwrap();
    let out = nxguard(&["check", "--config", config.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.txt:3"), "{stderr}");
}

#[test]
fn missing_config_file_is_a_clear_error() {
    let out = nxguard(&["serve", "--config", "/nonexistent/nxguard.toml"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot read config /nonexistent/nxguard.toml"), "{stderr}");
    assert_eq!(stderr.matches("No such file or directory").count(), 1, "{stderr}");
}
