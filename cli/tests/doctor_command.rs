//! `mooring doctor URL` against real mosquittos: what each says of itself, and which settings
//! of a configuration it will refuse or change.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{mooring, text};

use integration::mosquitto::{Mosquitto, MosquittoConfig};

const GATEWAY: &str = "servers = [\"mqtt://elsewhere\"]\nclient_id = \"gw\"\nkeep_alive = \"60s\"\n\n\
                       [will]\ntopic = \"gw/status\"\npayload = \"gone\"\nqos = 2\nretain = true\n";

#[test]
fn a_broker_without_qos_2_and_retain_is_reported_with_the_settings_it_will_refuse() {
    let broker = Mosquitto::with_config(&MosquittoConfig {
        extra: vec![
            "max_qos 1".into(),
            "retain_available false".into(),
            "max_keepalive 30".into(),
            "max_packet_size 2000".into(),
        ],
        ..MosquittoConfig::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    std::fs::write(&file, GATEWAY).unwrap();
    let url = broker.url();
    let output = mooring(&["doctor", &url, "--config", file.to_str().unwrap(), "--json"]);
    let out = text(&output.stdout);
    assert!(output.status.success(), "{out}{}", text(&output.stderr));
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["schema"], 1);
    assert_eq!(report["maximum_qos"], 1, "{report}");
    assert_eq!(report["retain_available"], false, "{report}");
    assert_eq!(report["server_keep_alive"], 30, "{report}");
    assert_eq!(report["maximum_packet_size"], 2000, "{report}");
    assert_eq!(
        report["granted_qos"], 1,
        "the probe at QoS 2 was granted 1: {report}"
    );
    let findings = report["findings"].to_string();
    for expected in [
        "will.qos = 2",
        "will.retain = true",
        "keep_alive = 60 s",
        "2000 bytes",
        "key_publishes is not set",
    ] {
        assert!(
            findings.contains(expected),
            "{expected} missing: {findings}"
        );
    }

    // The same for a person.
    let output = mooring(&["doctor", &url, "--config", file.to_str().unwrap()]);
    let out = text(&output.stdout);
    assert!(
        out.contains("Maximum QoS                          1"),
        "{out}"
    );
    assert!(
        out.contains("what the broker will refuse or change"),
        "{out}"
    );

    // A gateway that keys its QoS 1 publishes is not told to.
    let keyed = GATEWAY.replace(
        "keep_alive",
        "key_publishes = \"user_property\"\nkeep_alive",
    );
    std::fs::write(&file, keyed).unwrap();
    let output = mooring(&["doctor", &url, "--config", file.to_str().unwrap()]);
    let out = text(&output.stdout);
    assert!(output.status.success(), "{out}{}", text(&output.stderr));
    assert!(!out.contains("key_publishes"), "{out}");
}

#[test]
fn a_default_broker_takes_everything_and_the_probe_starts_a_clean_session() {
    let broker = Mosquitto::start().unwrap();
    let output = mooring(&["doctor", &broker.url(), "--json"]);
    let out = text(&output.stdout);
    assert!(output.status.success(), "{out}{}", text(&output.stderr));
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["maximum_qos"], 2, "{report}");
    assert_eq!(report["retain_available"], true, "{report}");
    assert_eq!(report["granted_qos"], 2, "{report}");
    assert_eq!(report["findings"], serde_json::json!([]), "{report}");
    // A clean session, ended by the DISCONNECT: mosquitto logs the client's clean start.
    assert!(broker.log().contains("mooring-doctor-"), "{}", broker.log());
    assert!(broker.log().contains(", c1,"), "{}", broker.log());
}

#[test]
fn a_broker_that_is_not_there_fails_naming_it() {
    let port = integration::mosquitto::free_port().unwrap();
    let url = format!("mqtt://127.0.0.1:{port}");
    let output = mooring(&["doctor", &url]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains(&url),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn a_broker_set_up_like_aws_iot_core_agrees_with_its_profile_and_a_default_one_differs() {
    // mosquitto limited as AWS IoT Core documents itself: QoS 1, keep alive up to 1200 s,
    // 128 KiB messages, TLS.
    let like_aws = Mosquitto::with_config(&MosquittoConfig {
        tls: true,
        extra: vec![
            "max_qos 1".into(),
            "max_keepalive 1200".into(),
            "max_packet_size 131072".into(),
        ],
        ..MosquittoConfig::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    let ca = like_aws.pki().unwrap().ca.clone();
    std::fs::write(
        &file,
        format!(
            "servers = [\"mqtts://elsewhere\"]\nclient_id = \"gw\"\nbroker_profile = \"aws-iot-core\"\n\
             keep_alive = \"60s\"\n\n[will]\ntopic = \"gw/status\"\npayload = \"gone\"\nqos = 2\n\n\
             [tls]\nca_file = {:?}\n",
            ca.to_str().unwrap()
        ),
    )
    .unwrap();
    let url = like_aws.tls_url().unwrap();
    let output = mooring(&["doctor", &url, "--config", file.to_str().unwrap(), "--json"]);
    let out = text(&output.stdout);
    assert!(output.status.success(), "{out}{}", text(&output.stderr));
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["profile"], "aws-iot-core", "{report}");
    assert_eq!(report["profile_from"], "the configuration", "{report}");
    assert_eq!(
        report["profile_differences"],
        serde_json::json!([]),
        "{report}"
    );
    let findings = report["findings"].to_string();
    assert!(
        findings.contains("will.qos = 2: AWS IoT Core takes QoS 1 at most"),
        "{findings}"
    );

    // A default mosquitto is not AWS IoT Core: the doctor says where it differs.
    let default = Mosquitto::start().unwrap();
    let output = mooring(&["doctor", &default.url(), "--profile", "aws-iot-core"]);
    let out = text(&output.stdout);
    assert!(output.status.success(), "{out}{}", text(&output.stderr));
    assert!(
        out.contains("profile aws-iot-core (from --profile): the CONNACK differs"),
        "{out}"
    );
    assert!(
        out.contains("Maximum QoS: the broker says 2, AWS IoT Core takes 1"),
        "{out}"
    );
    assert!(
        out.contains("Maximum Packet Size: the broker says no limit"),
        "{out}"
    );
    let unknown = mooring(&["doctor", &default.url(), "--profile", "aws"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(text(&unknown.stderr).contains("aws-iot-core"));
}
