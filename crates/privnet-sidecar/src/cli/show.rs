//! `privnet cert show`: a CA or member certificate in words or JSON (and the one-line descriptions
//! `privnet ca` and `privnet member add` print).

use super::*;

pub(crate) fn cert_show(a: &CertShowArgs) -> Result<()> {
    let text = files::read_text(&a.file)?;
    let now = now_unix();
    match armor::label(&text) {
        Some(armor::CA_CERTIFICATE) => {
            let ca =
                CaCertificate::from_pem(&text).with_context(|| format!("{}", a.file.display()))?;
            if a.json {
                println!("{}", ca_json(&ca, now));
            } else {
                print!("{}", describe_ca(&ca));
            }
        }
        Some(armor::CERTIFICATE) => {
            let cert = MemberCertificate::from_pem(&text)
                .with_context(|| format!("{}", a.file.display()))?;
            let verification = if a.cas.is_empty() {
                None
            } else {
                let cas = a
                    .cas
                    .iter()
                    .map(|p| read_ca_cert(p))
                    .collect::<Result<Vec<_>>>()?;
                let store = TrustStore::new(cas).map_err(|e| anyhow!("--ca: {e}"))?;
                Some(
                    store
                        .verify_certificate(&cert, None, now)
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                )
            };
            if a.json {
                let mut v = member_json(&cert, now);
                if let Some(result) = &verification {
                    v["verified"] = serde_json::Value::Bool(result.is_ok());
                    if let Err(e) = result {
                        v["verification_error"] = serde_json::Value::String(e.clone());
                    }
                }
                println!("{v}");
            } else {
                print!("{}", describe_member(&cert));
                match &verification {
                    None => println!("signature:    not checked (pass --ca FILE to verify)"),
                    Some(Ok(())) => {
                        println!("verified:     yes (signed by a given CA, valid now, not revoked)")
                    }
                    Some(Err(e)) => println!("verified:     NO: {e}"),
                }
            }
            if let Some(Err(_)) = verification {
                return Err(anyhow!("{}: verification failed", a.file.display()));
            }
        }
        Some(other) => bail!(
            "{}: expected a `{}` or `{}` armour; found `{}`",
            a.file.display(),
            armor::CERTIFICATE,
            armor::CA_CERTIFICATE,
            other.chars().take(64).collect::<String>()
        ),
        None => bail!(
            "{}: expected a certificate starting with `-----BEGIN {}-----`",
            a.file.display(),
            armor::CERTIFICATE
        ),
    }
    Ok(())
}

pub(super) fn validity_note(not_before: u64, not_after: u64, now: u64) -> String {
    if now < not_before {
        "not yet valid".to_owned()
    } else if now >= not_after {
        "EXPIRED".to_owned()
    } else {
        format!("valid, expires in {} days", (not_after - now) / DAY)
    }
}

pub(crate) fn describe_ca(ca: &CaCertificate) -> String {
    let now = now_unix();
    let mut s = String::new();
    let _ = writeln!(s, "CA certificate");
    let _ = writeln!(s, "network:      {}", ca.name());
    let _ = writeln!(s, "network id:   {}", ca.network_id());
    let _ = writeln!(s, "prefixes:     {}", join(ca.prefixes()));
    let _ = writeln!(
        s,
        "routes:       {}",
        if ca.routes().is_empty() {
            "(none)".into()
        } else {
            join(ca.routes())
        }
    );
    let _ = writeln!(s, "not before:   {}", utc(ca.not_before()));
    let _ = writeln!(
        s,
        "not after:    {} ({})",
        utc(ca.not_after()),
        validity_note(ca.not_before(), ca.not_after(), now)
    );
    let _ = writeln!(s, "public key:   {}", STANDARD.encode(ca.public_key()));
    let _ = writeln!(s, "fingerprint:  {}", ca.fingerprint());
    s
}

pub(crate) fn describe_member(c: &MemberCertificate) -> String {
    let now = now_unix();
    let mut s = String::new();
    let _ = writeln!(s, "member certificate");
    let _ = writeln!(s, "name:         {}", c.name());
    let _ = writeln!(s, "network id:   {}", c.network_id());
    let _ = writeln!(s, "addresses:    {}", join(c.addresses()));
    let _ = writeln!(
        s,
        "routes:       {}",
        if c.routes().is_empty() {
            "(none)".into()
        } else if c.routes().iter().any(|r| r.prefix() == 0) {
            format!(
                "{} (an exit: granted the default route; docs/CONFIG.md, \"Default route\")",
                join(c.routes())
            )
        } else {
            join(c.routes())
        }
    );
    let _ = writeln!(
        s,
        "groups:       {}",
        if c.groups().is_empty() {
            "(none)".into()
        } else {
            c.groups().join(", ")
        }
    );
    let _ = writeln!(s, "public key:   {}", STANDARD.encode(c.public_key()));
    let _ = writeln!(s, "not before:   {}", utc(c.not_before()));
    let _ = writeln!(
        s,
        "not after:    {} ({})",
        utc(c.not_after()),
        validity_note(c.not_before(), c.not_after(), now)
    );
    let _ = writeln!(s, "issuer (CA):  {}", c.ca_fingerprint());
    let _ = writeln!(s, "fingerprint:  {}", c.fingerprint());
    s
}

pub(super) fn ca_json(ca: &CaCertificate, now: u64) -> serde_json::Value {
    serde_json::json!({
        "kind": "ca",
        "network": ca.name(),
        "network_id": ca.network_id().to_hex(),
        "prefixes": ca.prefixes().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "routes": ca.routes().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "not_before": ca.not_before(),
        "not_after": ca.not_after(),
        "not_before_utc": utc(ca.not_before()),
        "not_after_utc": utc(ca.not_after()),
        "valid_now": ca.is_valid_at(now),
        "public_key": STANDARD.encode(ca.public_key()),
        "fingerprint": ca.fingerprint().to_hex(),
    })
}

pub(super) fn member_json(c: &MemberCertificate, now: u64) -> serde_json::Value {
    serde_json::json!({
        "kind": "member",
        "name": c.name(),
        "network_id": c.network_id().to_hex(),
        "addresses": c.addresses().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "routes": c.routes().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "groups": c.groups(),
        "public_key": STANDARD.encode(c.public_key()),
        "not_before": c.not_before(),
        "not_after": c.not_after(),
        "not_before_utc": utc(c.not_before()),
        "not_after_utc": utc(c.not_after()),
        "valid_now": c.is_valid_at(now),
        "ca_fingerprint": c.ca_fingerprint().to_hex(),
        "fingerprint": c.fingerprint().to_hex(),
    })
}
