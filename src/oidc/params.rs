//! Request parameters as RFC 6749 defines them: form-urlencoded, each at most once
//! (§3.1, §3.2), empty values treated as absent (§3.1).

use std::collections::{BTreeSet, HashMap};

use super::error::Error;

/// Longest accepted parameter value: ids, URIs, states and hints are all far shorter; a
/// bound keeps a hostile request cheap to refuse.
pub const MAX_VALUE_LEN: usize = 4096;

#[derive(Debug, Default, Clone)]
pub struct Params {
    values: HashMap<String, String>,
    /// Every repeated key: the ones that decide where errors go (`client_id`,
    /// `redirect_uri`) must be seen even when another key repeated first.
    duplicates: BTreeSet<String>,
    too_long: Option<String>,
}

impl Params {
    /// Parses `application/x-www-form-urlencoded` bytes (a query string or a body).
    /// Invalid UTF-8 is replaced, so it surfaces as a value that fails validation.
    pub fn parse(input: &[u8]) -> Self {
        Self::from_pairs(
            form_urlencoded::parse(input).map(|(k, v)| (k.into_owned(), v.into_owned())),
        )
    }

    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut params = Self::default();
        for (key, value) in pairs {
            if value.is_empty() {
                continue;
            }
            if value.len() > MAX_VALUE_LEN && params.too_long.is_none() {
                params.too_long = Some(key.clone());
            }
            if params.values.contains_key(&key) {
                params.duplicates.insert(key.clone());
            }
            params.values.insert(key, value);
        }
        params
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// RFC 6749 §3.1: "Request and response parameters MUST NOT be included more than
    /// once"; oversized values are refused for the same reason (no ambiguity, bounded
    /// work).
    pub fn check_well_formed(&self) -> Result<(), Error> {
        if let Some(key) = self.duplicates.iter().next() {
            return Err(Error::invalid_request(format!(
                "parameter {} is repeated",
                printable(key)
            )));
        }
        if let Some(key) = &self.too_long {
            return Err(Error::invalid_request(format!(
                "parameter {} is too long",
                printable(key)
            )));
        }
        Ok(())
    }

    /// Whether `key` was sent more than once (checked before anything else for the
    /// parameters that decide where errors go).
    pub fn is_duplicate(&self, key: &str) -> bool {
        self.duplicates.contains(key)
    }
}

/// A parameter name safe to echo in an error description.
fn printable(key: &str) -> String {
    key.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(40)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_empty_values_and_long_values() {
        let p = Params::parse(b"a=1&b=&a=2&c=1&c=2");
        assert!(p.check_well_formed().is_err());
        assert!(p.is_duplicate("a"));
        assert!(p.is_duplicate("c"), "a later repeat is seen too");
        let p = Params::parse(b"a=1&b=");
        assert!(p.check_well_formed().is_ok());
        assert_eq!(p.get("b"), None);
        let long = format!("a={}", "x".repeat(MAX_VALUE_LEN + 1));
        assert!(Params::parse(long.as_bytes()).check_well_formed().is_err());
        let p = Params::parse(b"state=%FF%FE");
        assert_eq!(p.get("state"), Some("\u{FFFD}\u{FFFD}"));
    }
}
