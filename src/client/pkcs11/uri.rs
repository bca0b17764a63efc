//! PKCS#11 URIs (RFC 7512): which module, token and key a client authenticates with.
//!
//! Path attributes select; the URI is refused when it holds one this parser does not know
//! (RFC 7512 §2.3: an unknown path attribute must not widen the match), unless it is a
//! vendor's `x-` attribute. Unknown query attributes are ignored, as the RFC asks.

use std::path::PathBuf;

use percent_encoding::percent_decode_str;

/// A parsed `pkcs11:` URI.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Pkcs11Uri {
    pub token: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub slot_id: Option<u64>,
    pub slot_description: Option<String>,
    pub slot_manufacturer: Option<String>,
    pub library_manufacturer: Option<String>,
    pub library_description: Option<String>,
    /// `M` or `M.m`.
    pub library_version: Option<(u8, Option<u8>)>,
    /// The key's `CKA_LABEL`.
    pub object: Option<String>,
    /// The key's `CKA_ID`, as bytes.
    pub id: Option<Vec<u8>>,
    pub module_path: Option<PathBuf>,
    pub pin_value: Option<String>,
    pub pin_source: Option<PathBuf>,
}

impl std::fmt::Debug for Pkcs11Uri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

fn decode(name: &str, value: &str) -> Result<Vec<u8>, String> {
    // A '%' not followed by two hex digits is a malformed URI, not a literal.
    let bytes = value.as_bytes();
    for (at, byte) in bytes.iter().enumerate() {
        if *byte == b'%'
            && !(bytes.get(at + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(at + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return Err(format!("{name}: '%' must be followed by two hex digits"));
        }
    }
    Ok(percent_decode_str(value).collect())
}

fn text(name: &str, value: &str) -> Result<String, String> {
    String::from_utf8(decode(name, value)?).map_err(|_| format!("{name} is not UTF-8"))
}

fn set<T>(slot: &mut Option<T>, name: &str, value: T) -> Result<(), String> {
    if slot.replace(value).is_some() {
        return Err(format!("{name} is given twice"));
    }
    Ok(())
}

fn version(value: &str) -> Result<(u8, Option<u8>), String> {
    let bad = || format!("library-version {value:?} is not M or M.m");
    let (major, minor) = match value.split_once('.') {
        Some((major, minor)) => (major, Some(minor.parse().map_err(|_| bad())?)),
        None => (value, None),
    };
    Ok((major.parse().map_err(|_| bad())?, minor))
}

/// A `pin-source` is a file name or a `file:` URI.
fn pin_file(value: &str) -> Result<PathBuf, String> {
    let value = text("pin-source", value)?;
    let path = match value.strip_prefix("file://") {
        Some(rest) => rest.to_owned(),
        None => value.strip_prefix("file:").unwrap_or(&value).to_owned(),
    };
    if path.is_empty() {
        return Err("pin-source names no file".to_owned());
    }
    Ok(PathBuf::from(path))
}

impl Pkcs11Uri {
    /// Parses `pkcs11:path?query`.
    pub fn parse(uri: &str) -> Result<Self, String> {
        let rest = uri
            .strip_prefix("pkcs11:")
            .ok_or_else(|| "a PKCS#11 URI starts with \"pkcs11:\"".to_owned())?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut parsed = Self::default();
        for attribute in path.split(';').filter(|a| !a.is_empty()) {
            let (name, value) = attribute
                .split_once('=')
                .ok_or_else(|| format!("path attribute {attribute:?} has no '='"))?;
            match name {
                "token" => set(&mut parsed.token, name, text(name, value)?)?,
                "manufacturer" => set(&mut parsed.manufacturer, name, text(name, value)?)?,
                "model" => set(&mut parsed.model, name, text(name, value)?)?,
                "serial" => set(&mut parsed.serial, name, text(name, value)?)?,
                "slot-id" => {
                    let id = text(name, value)?
                        .parse()
                        .map_err(|_| format!("slot-id {value:?} is not a number"))?;
                    set(&mut parsed.slot_id, name, id)?;
                }
                "slot-description" => {
                    set(&mut parsed.slot_description, name, text(name, value)?)?;
                }
                "slot-manufacturer" => {
                    set(&mut parsed.slot_manufacturer, name, text(name, value)?)?;
                }
                "library-manufacturer" => {
                    set(&mut parsed.library_manufacturer, name, text(name, value)?)?;
                }
                "library-description" => {
                    set(&mut parsed.library_description, name, text(name, value)?)?;
                }
                "library-version" => {
                    set(&mut parsed.library_version, name, version(value)?)?;
                }
                "object" => set(&mut parsed.object, name, text(name, value)?)?,
                "id" => set(&mut parsed.id, name, decode(name, value)?)?,
                "type" => {
                    if value != "private" {
                        return Err(format!(
                            "type={value}: the client needs its private key (type=private)"
                        ));
                    }
                }
                vendor if vendor.starts_with("x-") => {}
                unknown => return Err(format!("unknown path attribute {unknown:?}")),
            }
        }
        for attribute in query.split('&').filter(|a| !a.is_empty()) {
            let (name, value) = attribute.split_once('=').unwrap_or((attribute, ""));
            match name {
                "module-path" => {
                    set(&mut parsed.module_path, name, text(name, value)?.into())?;
                }
                "module-name" => {
                    return Err(
                        "module-name is not supported: give the module's file as module-path"
                            .to_owned(),
                    );
                }
                "pin-value" => set(&mut parsed.pin_value, name, text(name, value)?)?,
                "pin-source" => set(&mut parsed.pin_source, name, pin_file(value)?)?,
                _ => {}
            }
        }
        if parsed.pin_value.is_some() && parsed.pin_source.is_some() {
            return Err("give the PIN as pin-value or as pin-source, not both".to_owned());
        }
        if parsed.object.is_none() && parsed.id.is_none() {
            return Err("name the key by object (its label) or id".to_owned());
        }
        Ok(parsed)
    }

    /// The URI without its PIN, for errors and logs.
    pub fn redacted(&self) -> String {
        let mut parts = Vec::new();
        let mut add = |name: &str, value: &Option<String>| {
            if let Some(value) = value {
                parts.push(format!("{name}={value}"));
            }
        };
        add("token", &self.token);
        add("manufacturer", &self.manufacturer);
        add("model", &self.model);
        add("serial", &self.serial);
        add("slot-id", &self.slot_id.map(|id| id.to_string()));
        add("object", &self.object);
        add(
            "id",
            &self
                .id
                .as_ref()
                .map(|id| id.iter().map(|b| format!("%{b:02x}")).collect()),
        );
        let mut uri = format!("pkcs11:{}", parts.join(";"));
        if let Some(path) = &self.module_path {
            uri.push_str(&format!("?module-path={}", path.display()));
        }
        uri
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn path_and_query_attributes_are_read_and_percent_decoded() {
        let uri = Pkcs11Uri::parse(
            "pkcs11:token=My%20Token;serial=0123;slot-id=7;object=device;id=%01%ff;type=private;\
             library-version=2.6?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=12%2634",
        )
        .unwrap();
        assert_eq!(uri.token.as_deref(), Some("My Token"));
        assert_eq!(uri.serial.as_deref(), Some("0123"));
        assert_eq!(uri.slot_id, Some(7));
        assert_eq!(uri.object.as_deref(), Some("device"));
        assert_eq!(uri.id, Some(vec![0x01, 0xff]));
        assert_eq!(uri.library_version, Some((2, Some(6))));
        assert_eq!(
            uri.module_path,
            Some(PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"))
        );
        assert_eq!(uri.pin_value.as_deref(), Some("12&34"));
    }

    #[test]
    fn a_pin_source_is_a_file_name_or_a_file_uri() {
        for (given, path) in [
            ("/etc/pin", "/etc/pin"),
            ("file:/etc/pin", "/etc/pin"),
            ("file:///etc/pin", "/etc/pin"),
        ] {
            let uri = Pkcs11Uri::parse(&format!("pkcs11:object=k?pin-source={given}")).unwrap();
            assert_eq!(uri.pin_source, Some(PathBuf::from(path)), "{given}");
        }
    }

    #[test]
    fn what_could_widen_or_confuse_the_match_is_refused() {
        for (uri, why) in [
            ("object=k", "starts with"),
            (
                "pkcs11:object=k;colour=red",
                "unknown path attribute \"colour\"",
            ),
            ("pkcs11:object=k;object=j", "object is given twice"),
            ("pkcs11:object=k;type=cert", "type=private"),
            ("pkcs11:token=t", "name the key"),
            ("pkcs11:object=k;slot-id=x", "not a number"),
            ("pkcs11:object=k%2", "two hex digits"),
            ("pkcs11:object=k?pin-value=1&pin-source=/p", "not both"),
            ("pkcs11:object=k?module-name=softhsm2", "module-path"),
            ("pkcs11:object", "has no '='"),
        ] {
            let error = Pkcs11Uri::parse(uri).unwrap_err();
            assert!(error.contains(why), "{uri}: {error}");
        }
    }

    #[test]
    fn vendor_path_attributes_and_unknown_query_attributes_are_ignored() {
        let uri = Pkcs11Uri::parse("pkcs11:object=k;x-vendor=1?colour=red").unwrap();
        assert_eq!(uri.object.as_deref(), Some("k"));
    }

    #[test]
    fn the_redacted_form_never_shows_the_pin() {
        let uri = Pkcs11Uri::parse("pkcs11:token=t;object=k;id=%aa?pin-value=secret").unwrap();
        assert_eq!(uri.redacted(), "pkcs11:token=t;object=k;id=%aa");
        assert!(!format!("{uri:?}").contains("secret"));
    }
}
