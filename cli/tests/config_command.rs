//! `mooring config …` as an operator runs it: a file checked and its settings in effect
//! printed without its secrets, a wrong key named with its file, and the reference.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{mooring, text};

#[test]
fn check_prints_the_settings_in_effect_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("password");
    std::fs::write(&secret, "never-printed\n").unwrap();
    let file = dir.path().join("gateway.toml");
    std::fs::write(
        &file,
        format!(
            "servers = [\"mqtts://broker.example\"]\nclient_id = \"gw\"\nusername = \"gw\"\n\
             password_file = {:?}\nkeep_alive = \"45s\"\n\n[store]\nbackend = \"postgres\"\n\
             connection = \"host=db password=also-never-printed\"\n\n\
             [[proxies]]\nurl = \"http://gw:inline-never-printed@proxy.plant:3128\"\n\n\
             [[proxies]]\nurl = \"socks5h://10.0.0.1:1080\"\nusername = \"gw\"\n\
             password = \"proxy-never-printed\"\nservers = [\"mqtts://broker.example\"]\n",
            secret.display().to_string()
        ),
    )
    .unwrap();
    let output = mooring(&["config", "check", file.to_str().unwrap()]);
    let out = text(&output.stdout);
    assert!(output.status.success(), "{out}{}", text(&output.stderr));
    assert!(out.contains("valid"), "{out}");
    assert!(out.contains("keep_alive = \"45s\""), "{out}");
    assert!(
        out.contains("inbox_capacity = 1024"),
        "defaults included: {out}"
    );
    assert!(out.contains("password_file"), "{out}");
    assert!(out.contains("http://gw@proxy.plant:3128"), "{out}");
    assert!(out.contains("socks5h://10.0.0.1:1080"), "{out}");
    assert!(!out.contains("never-printed"), "{out}");
}

#[test]
fn check_names_the_file_and_the_key_at_fault() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    for (text_of_file, key) in [
        ("keep_alive = \"500ms\"\n", "keep_alive"),
        ("sever = \"mqtt://x\"\n", "sever"),
        (
            "password_env = \"MOORING_NOT_SET_ANYWHERE\"\n",
            "password_env",
        ),
        ("[store]\nbackend = \"redb\"\n", "store.path"),
        ("servers = [\"nope\"]\n", "nope"),
    ] {
        std::fs::write(&file, text_of_file).unwrap();
        let output = mooring(&["config", "check", file.to_str().unwrap()]);
        let err = text(&output.stderr);
        assert_eq!(output.status.code(), Some(6), "{text_of_file}: {err}");
        assert!(err.contains("gateway.toml"), "{text_of_file}: {err}");
        assert!(err.contains(key), "{text_of_file}: {err}");
    }
}

#[test]
fn reference_is_the_configuration_md_of_the_repository() {
    let output = mooring(&["config", "reference"]);
    assert!(output.status.success());
    let file = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../CONFIGURATION.md"))
        .unwrap();
    assert_eq!(text(&output.stdout), file);
}
