//! Reporting upcoming expiry of a node's own certificate and of its CAs.

use super::ca::CaCertificate;
use super::codec::Fingerprint;
use super::member::MemberCertificate;

/// What an [`ExpiryNotice`] is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpirySubject {
    /// The node's own member certificate.
    Member {
        /// Member name.
        name: String,
        /// Certificate fingerprint.
        fingerprint: Fingerprint,
    },
    /// A trusted CA certificate.
    Ca {
        /// Network name.
        name: String,
        /// CA fingerprint.
        fingerprint: Fingerprint,
    },
}

/// Where a certificate stands relative to `now` and the warning horizon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExpiryState {
    /// `now` is before `not_before`.
    NotYetValid,
    /// Valid, and still valid at `now + horizon`.
    Valid,
    /// Valid now, but expires within the horizon: warn.
    ExpiringSoon,
    /// Expired.
    Expired,
}

/// The expiry status of one certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiryNotice {
    /// Which certificate.
    pub subject: ExpirySubject,
    /// Its `not_after` (Unix seconds).
    pub not_after: u64,
    /// Seconds from `now` to `not_after` (0 once expired); use it as the metric value.
    pub seconds_left: u64,
    /// Classification.
    pub state: ExpiryState,
}

impl ExpiryNotice {
    /// Whether this notice should be logged as a warning (expiring soon, expired or not yet valid).
    pub fn needs_attention(&self) -> bool {
        self.state != ExpiryState::Valid
    }
}

fn classify(not_before: u64, not_after: u64, now: u64, horizon: u64) -> ExpiryState {
    if now >= not_after {
        ExpiryState::Expired
    } else if now < not_before {
        ExpiryState::NotYetValid
    } else if now.saturating_add(horizon) >= not_after {
        ExpiryState::ExpiringSoon
    } else {
        ExpiryState::Valid
    }
}

/// The expiry status of the node's own certificate (if given) and of every trusted CA, in that
/// order, at `now` with a warning horizon of `horizon` seconds. Pure: log and export the result.
pub fn expiry_report(
    own: Option<&MemberCertificate>,
    cas: &[CaCertificate],
    now: u64,
    horizon: u64,
) -> Vec<ExpiryNotice> {
    let own = own.map(|c| ExpiryNotice {
        subject: ExpirySubject::Member {
            name: c.name().to_owned(),
            fingerprint: c.fingerprint(),
        },
        not_after: c.not_after(),
        seconds_left: c.not_after().saturating_sub(now),
        state: classify(c.not_before(), c.not_after(), now, horizon),
    });
    let cas = cas.iter().map(|c| ExpiryNotice {
        subject: ExpirySubject::Ca {
            name: c.name().to_owned(),
            fingerprint: c.fingerprint(),
        },
        not_after: c.not_after(),
        seconds_left: c.not_after().saturating_sub(now),
        state: classify(c.not_before(), c.not_after(), now, horizon),
    });
    own.into_iter().chain(cas).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn expiry_report_classifies() {
        let (_, ca, cert) = member_fixture(1);
        let r = expiry_report(Some(&cert), std::slice::from_ref(&ca), NOW, 7 * DAY);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].state, ExpiryState::Valid);
        assert_eq!(r[0].seconds_left, 30 * DAY);
        assert!(matches!(r[0].subject, ExpirySubject::Member { .. }));
        assert!(matches!(r[1].subject, ExpirySubject::Ca { .. }));
        assert!(!r[0].needs_attention());

        let r = expiry_report(
            Some(&cert),
            std::slice::from_ref(&ca),
            NOW + 25 * DAY,
            7 * DAY,
        );
        assert_eq!(r[0].state, ExpiryState::ExpiringSoon);
        assert_eq!(r[1].state, ExpiryState::Valid);
        assert!(r[0].needs_attention());

        let r = expiry_report(Some(&cert), std::slice::from_ref(&ca), cert.not_after(), 0);
        assert_eq!(r[0].state, ExpiryState::Expired);
        assert_eq!(r[0].seconds_left, 0);

        let r = expiry_report(
            None,
            std::slice::from_ref(&ca),
            ca.not_after() - DAY,
            7 * DAY,
        );
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].state, ExpiryState::ExpiringSoon);

        let r = expiry_report(Some(&cert), &[], cert.not_before() - 1, u64::MAX);
        assert_eq!(r[0].state, ExpiryState::NotYetValid);
    }
}
