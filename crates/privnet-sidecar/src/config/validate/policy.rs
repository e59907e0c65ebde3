//! `node.policy`: the policy file's text, parsed and compiled by the core's policy engine
//! (docs/POLICY.md). Pure: the loader reads the file.
//!
//! Every problem the engine finds (it reports them all, up to 100, in file order) becomes one
//! [`Problem`] of the **policy file**, with its line and key path inside that file
//! (`application[2].ports[0]`), the column in the text of what was expected; the embedded
//! `[[test]]` entries and the lints are `privnet policy check`'s business, not the loader's.

use std::path::Path;
use std::sync::Arc;

use privnet_core::policy::{compile, parse_policy, PolicyError};

use super::super::types::{PolicySettings, Problem};

/// Parse and compile the policy `text` read from `file`.
///
/// # Errors
/// Every problem of the policy, each naming `file` and (when known) the line.
pub(in crate::config) fn policy(file: &Path, text: &str) -> Result<PolicySettings, Vec<Problem>> {
    let name = file.display().to_string();
    let compiled = parse_policy(text, &name)
        .and_then(|spec| compile(&spec, &name))
        .map_err(|e| problems(file, &e))?;
    Ok(PolicySettings {
        file: file.to_owned(),
        compiled: Arc::new(compiled),
    })
}

/// The engine's problems as the loader's.
fn problems(file: &Path, e: &PolicyError) -> Vec<Problem> {
    e.problems
        .iter()
        .map(|p| Problem {
            file: file.to_owned(),
            key: p.key.clone(),
            line: p.location.map(|l| l.line),
            expected: match p.location {
                Some(l) => format!("(column {}) expected {}", l.column, p.expected),
                None => format!("expected {}", p.expected),
            },
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_names_the_policy_file_and_line() {
        let text = "[[application]]\nfrom = \"any\"\nto = \"any\"\naction = \"permit\"\n\n\
                    [[application]]\nfrom = \"any\"\nto = \"any\"\naction = \"allow\"\n\
                    proto = \"tcp\"\nports = [70000]\n";
        let got = policy(Path::new("/etc/privnet/shop.toml"), text).unwrap_err();
        assert_eq!(got.len(), 2, "{got:#?}");
        assert!(got
            .iter()
            .all(|p| p.file == Path::new("/etc/privnet/shop.toml")));
        assert_eq!(got[0].line, Some(4));
        assert_eq!(got[0].key, "application[0].action");
        assert!(got[0].expected.contains("`allow`"), "{got:?}");
        assert_eq!(got[1].line, Some(11));
        assert!(got[1]
            .to_string()
            .starts_with("/etc/privnet/shop.toml:11: application[1].ports"));
    }

    #[test]
    fn a_valid_policy_is_compiled_and_hashed() {
        let text = "[[application]]\nid = \"web\"\nfrom = \"network\"\nto = \"any\"\n\
                    action = \"allow\"\nproto = \"tcp\"\nports = [443]\n";
        let p = policy(Path::new("p.toml"), text).unwrap();
        assert_eq!(p.rule_count(), 1);
        assert_eq!(p.hash().len(), 64);
        assert!(
            p.describe()
                .contains("1 rules (platform 0, application 1, baseline 0), default deny"),
            "{}",
            p.describe()
        );
        // Comments change nothing the policy enforces: the same hash.
        let again = policy(Path::new("p.toml"), &format!("# edited\n{text}")).unwrap();
        assert_eq!(again.hash(), p.hash());
    }
}
