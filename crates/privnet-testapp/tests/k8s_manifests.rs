//! Parses every Kubernetes manifest in `deploy/kubernetes/` and checks the fields a cluster needs:
//! apiVersion/kind/metadata.name, the pod spec's containers and images, the sidecar's capability, TUN device,
//! probes and grace period, and that every ConfigMap/Secret/volume/port reference resolves to something
//! defined in the manifests. A second test feeds deliberately broken variants to the checker, so a checker
//! that accepts everything would fail.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

/// The image name the sidecar container is recognised by.
const SIDECAR_IMAGE: &str = "privnet:";
const PROBE: [&str; 2] = ["privnet", "health"];

fn manifest_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes")
}

/// (file name, text) of every `*.yaml`/`*.yml` file, sorted.
fn manifest_files() -> Vec<(String, String)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(manifest_dir()).expect("deploy/kubernetes exists") {
        let path = entry.expect("dir entry").path();
        let is_yaml = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        );
        if is_yaml {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("utf-8 file name")
                .to_owned();
            let text = std::fs::read_to_string(&path).expect("readable manifest");
            files.push((name, text));
        }
    }
    files.sort();
    files
}

fn s(y: &Yaml) -> Option<&str> {
    y.as_str()
}

fn list(y: &Yaml) -> &[Yaml] {
    y.as_vec().map(Vec::as_slice).unwrap_or(&[])
}

fn keys(y: &Yaml) -> BTreeSet<String> {
    y.as_hash()
        .map(|h| {
            h.keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn str_map(y: &Yaml) -> BTreeMap<String, String> {
    y.as_hash()
        .map(|h| {
            h.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !name.starts_with(['-', '.'])
        && !name.ends_with(['-', '.'])
}

fn command(y: &Yaml) -> Vec<&str> {
    list(y).iter().filter_map(Yaml::as_str).collect()
}

/// Checks a set of parsed manifests; returns every problem found (empty = valid).
fn check(files: &[(String, String)]) -> Vec<String> {
    let mut errors = Vec::new();
    let mut objects: Vec<(String, Yaml)> = Vec::new();
    for (file, text) in files {
        match YamlLoader::load_from_str(text) {
            Ok(docs) => {
                if docs.is_empty() {
                    errors.push(format!("{file}: no YAML document"));
                }
                for doc in docs {
                    objects.push((file.clone(), doc));
                }
            }
            Err(e) => errors.push(format!("{file}: invalid YAML: {e}")),
        }
    }

    // Pass 1: identity of every object, and the names later passes resolve against.
    let mut config_maps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut secrets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    for (file, doc) in &objects {
        let (Some(api), Some(kind)) = (s(&doc["apiVersion"]), s(&doc["kind"])) else {
            errors.push(format!("{file}: apiVersion and kind must be strings"));
            continue;
        };
        if kind == "Kustomization" {
            continue;
        }
        let expected_api = match kind {
            "ConfigMap" | "Secret" | "Service" => "v1",
            "Deployment" => "apps/v1",
            other => {
                errors.push(format!("{file}: unexpected kind {other}"));
                continue;
            }
        };
        if api != expected_api {
            errors.push(format!(
                "{file}: {kind} needs apiVersion {expected_api}, has {api}"
            ));
        }
        let Some(name) = s(&doc["metadata"]["name"]) else {
            errors.push(format!("{file}: {kind} without metadata.name"));
            continue;
        };
        if !is_dns_label(name) {
            errors.push(format!("{file}: {kind} name {name:?} is not a DNS name"));
        }
        if !seen.insert((kind.to_owned(), name.to_owned())) {
            errors.push(format!("{file}: duplicate {kind} {name}"));
        }
        match kind {
            "ConfigMap" => {
                config_maps.insert(name.to_owned(), keys(&doc["data"]));
            }
            "Secret" => {
                let mut k = keys(&doc["data"]);
                k.extend(keys(&doc["stringData"]));
                secrets.insert(name.to_owned(), k);
            }
            _ => {}
        }
    }

    // Kustomization: lists exactly the other manifests, all of which exist.
    for (file, doc) in &objects {
        if s(&doc["kind"]) != Some("Kustomization") {
            continue;
        }
        let listed: BTreeSet<&str> = list(&doc["resources"])
            .iter()
            .filter_map(Yaml::as_str)
            .collect();
        let others: BTreeSet<&str> = files
            .iter()
            .map(|(f, _)| f.as_str())
            .filter(|f| f != file)
            .collect();
        if listed != others {
            errors.push(format!(
                "{file}: resources {listed:?} differ from the manifests {others:?}"
            ));
        }
    }

    // Pass 2: Deployments.
    let mut deployments = 0;
    let mut pod_templates: Vec<(String, BTreeMap<String, String>, BTreeSet<String>)> = Vec::new();
    for (file, doc) in &objects {
        if s(&doc["kind"]) != Some("Deployment") {
            continue;
        }
        deployments += 1;
        let name = s(&doc["metadata"]["name"]).unwrap_or("?");
        let at = format!("{file}: Deployment {name}");
        let spec = &doc["spec"];
        let template = &spec["template"];
        let labels = str_map(&template["metadata"]["labels"]);
        let selector = str_map(&spec["selector"]["matchLabels"]);
        if selector.is_empty() {
            errors.push(format!("{at}: spec.selector.matchLabels is empty"));
        }
        for (k, v) in &selector {
            if labels.get(k) != Some(v) {
                errors.push(format!(
                    "{at}: selector {k}={v} does not match the pod template labels"
                ));
            }
        }
        let pod = &template["spec"];
        match pod["terminationGracePeriodSeconds"].as_i64() {
            Some(n) if n > 0 => {}
            _ => errors.push(format!(
                "{at}: terminationGracePeriodSeconds must be a positive integer"
            )),
        }

        // Volumes and what they resolve to.
        let mut volumes: BTreeMap<String, &Yaml> = BTreeMap::new();
        for v in list(&pod["volumes"]) {
            let Some(vname) = s(&v["name"]) else {
                errors.push(format!("{at}: volume without name"));
                continue;
            };
            volumes.insert(vname.to_owned(), v);
        }
        // Files each volume provides (for configMap/secret/projected volumes).
        let mut volume_files: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (vname, v) in &volumes {
            let mut sources: Vec<(&str, &Yaml)> = Vec::new();
            if !v["configMap"].is_badvalue() {
                sources.push(("configMap", &v["configMap"]));
            }
            if !v["secret"].is_badvalue() {
                sources.push(("secret", &v["secret"]));
            }
            for src in list(&v["projected"]["sources"]) {
                for kind in ["configMap", "secret"] {
                    if !src[kind].is_badvalue() {
                        sources.push((kind, &src[kind]));
                    }
                }
            }
            for (kind, src) in sources {
                let (ref_name, defined) = if kind == "configMap" {
                    let n = s(&src["name"]).unwrap_or("");
                    (n, config_maps.get(n))
                } else {
                    // A plain secret volume names it secretName; a projected source names it name.
                    let n = s(&src["secretName"])
                        .or_else(|| s(&src["name"]))
                        .unwrap_or("");
                    (n, secrets.get(n))
                };
                let Some(defined_keys) = defined else {
                    errors.push(format!(
                        "{at}: volume {vname} refers to undefined {kind} {ref_name:?}"
                    ));
                    continue;
                };
                let files = volume_files.entry(vname.clone()).or_default();
                let items = list(&src["items"]);
                if items.is_empty() {
                    files.extend(defined_keys.iter().cloned());
                }
                for item in items {
                    let key = s(&item["key"]).unwrap_or("");
                    if !defined_keys.contains(key) {
                        errors.push(format!(
                            "{at}: volume {vname}: {kind} {ref_name} has no key {key:?}"
                        ));
                    }
                    files.insert(s(&item["path"]).unwrap_or(key).to_owned());
                }
            }
        }

        let init = list(&pod["initContainers"]);
        let main = list(&pod["containers"]);
        if main.is_empty() {
            errors.push(format!("{at}: pod spec has no containers"));
        }
        let mut container_names = BTreeSet::new();
        let mut port_names = BTreeSet::new();
        let mut sidecars = 0;
        let mut apps = 0;
        for (is_init, c) in init
            .iter()
            .map(|c| (true, c))
            .chain(main.iter().map(|c| (false, c)))
        {
            let cname = s(&c["name"]).unwrap_or("");
            let cat = format!("{at}: container {cname:?}");
            if !is_dns_label(cname) || !container_names.insert(cname.to_owned()) {
                errors.push(format!("{cat}: missing, invalid or duplicate name"));
            }
            let image = s(&c["image"]).unwrap_or("");
            if image.is_empty() {
                errors.push(format!("{cat}: no image"));
            }
            for p in list(&c["ports"]) {
                if let Some(pn) = s(&p["name"]) {
                    port_names.insert(pn.to_owned());
                }
                if p["containerPort"]
                    .as_i64()
                    .is_none_or(|n| !(1..=65535).contains(&n))
                {
                    errors.push(format!("{cat}: bad containerPort"));
                }
            }
            // Every mount names a defined volume.
            let mut mounts: BTreeMap<String, String> = BTreeMap::new();
            for m in list(&c["volumeMounts"]) {
                let (Some(vn), Some(path)) = (s(&m["name"]), s(&m["mountPath"])) else {
                    errors.push(format!("{cat}: volumeMount without name or mountPath"));
                    continue;
                };
                if !volumes.contains_key(vn) {
                    errors.push(format!("{cat}: mounts undefined volume {vn:?}"));
                }
                mounts.insert(path.to_owned(), vn.to_owned());
            }
            // env references resolve.
            for e in list(&c["env"]) {
                for (kind, defined) in [
                    ("configMapKeyRef", &config_maps),
                    ("secretKeyRef", &secrets),
                ] {
                    let r = &e["valueFrom"][kind];
                    if r.is_badvalue() {
                        continue;
                    }
                    let (n, k) = (s(&r["name"]).unwrap_or(""), s(&r["key"]).unwrap_or(""));
                    if !defined.get(n).is_some_and(|keys| keys.contains(k)) {
                        errors.push(format!("{cat}: env {kind} {n}/{k} does not resolve"));
                    }
                }
            }

            let sc = &c["securityContext"];
            if image.contains(SIDECAR_IMAGE) {
                sidecars += 1;
                if is_init && s(&c["restartPolicy"]) != Some("Always") {
                    errors.push(format!(
                        "{cat}: sidecar in initContainers needs restartPolicy: Always (native sidecar)"
                    ));
                }
                let add: Vec<&str> = command(&sc["capabilities"]["add"]);
                if !add.contains(&"NET_ADMIN") {
                    errors.push(format!("{cat}: capabilities.add lacks NET_ADMIN"));
                }
                if !command(&sc["capabilities"]["drop"]).contains(&"ALL") {
                    errors.push(format!("{cat}: capabilities.drop lacks ALL"));
                }
                if sc["privileged"].as_bool() == Some(true) {
                    errors.push(format!("{cat}: must not be privileged"));
                }
                if sc["allowPrivilegeEscalation"].as_bool() != Some(false) {
                    errors.push(format!("{cat}: allowPrivilegeEscalation must be false"));
                }
                // The TUN device: a hostPath char device mounted at /dev/net/tun, or a device-plugin
                // resource with "tun" in its name.
                let hostpath_tun = mounts
                    .get("/dev/net/tun")
                    .and_then(|vn| volumes.get(vn))
                    .is_some_and(|v| {
                        s(&v["hostPath"]["path"]) == Some("/dev/net/tun")
                            && s(&v["hostPath"]["type"]) == Some("CharDevice")
                    });
                let plugin_tun = keys(&c["resources"]["limits"])
                    .iter()
                    .any(|k| k.contains("tun"));
                if !hostpath_tun && !plugin_tun {
                    errors.push(format!(
                        "{cat}: no /dev/net/tun (CharDevice hostPath mount or device-plugin limit)"
                    ));
                }
                for probe in ["livenessProbe", "readinessProbe"] {
                    if command(&c[probe]["exec"]["command"]) != PROBE {
                        errors.push(format!("{cat}: {probe} must be exec {PROBE:?}"));
                    }
                }
                // The config file the sidecar is told to read, and every /etc/privnet/ file that config
                // names, must be provided by the volume mounted at /etc/privnet.
                let args = command(&c["args"]);
                let config_path = args
                    .iter()
                    .position(|a| *a == "--config")
                    .and_then(|i| args.get(i + 1))
                    .copied()
                    .unwrap_or("/etc/privnet/privnet.toml");
                let provided = mounts
                    .get("/etc/privnet")
                    .and_then(|vn| volume_files.get(vn))
                    .cloned()
                    .unwrap_or_default();
                match config_path.strip_prefix("/etc/privnet/") {
                    Some(f) if provided.contains(f) => {}
                    _ => errors.push(format!(
                        "{cat}: config {config_path} is not provided by a mounted volume"
                    )),
                }
                for (cm, _) in config_maps
                    .iter()
                    .filter(|(_, k)| k.contains("privnet.toml"))
                {
                    let text = objects
                        .iter()
                        .find(|(_, d)| {
                            s(&d["kind"]) == Some("ConfigMap")
                                && s(&d["metadata"]["name"]) == Some(cm)
                        })
                        .and_then(|(_, d)| s(&d["data"]["privnet.toml"]))
                        .unwrap_or("");
                    // Runtime files (the status socket) need a writable mount at /run/privnet.
                    if text.contains("\"/run/privnet/") && !mounts.contains_key("/run/privnet") {
                        errors.push(format!(
                            "{cat}: ConfigMap {cm} privnet.toml uses /run/privnet/, which is not mounted"
                        ));
                    }
                    for referenced in text
                        .split('"')
                        .filter_map(|t| t.strip_prefix("/etc/privnet/"))
                    {
                        if !provided.contains(referenced) {
                            errors.push(format!(
                                "{cat}: ConfigMap {cm} privnet.toml names /etc/privnet/{referenced}, which no volume provides"
                            ));
                        }
                    }
                }
            } else {
                apps += 1;
                if sc["runAsNonRoot"].as_bool() != Some(true) {
                    errors.push(format!(
                        "{cat}: the app container should set runAsNonRoot: true"
                    ));
                }
            }
        }
        if sidecars != 1 {
            errors.push(format!(
                "{at}: expected exactly one privnet sidecar, found {sidecars}"
            ));
        }
        if apps == 0 {
            errors.push(format!(
                "{at}: no application container next to the sidecar"
            ));
        }
        pod_templates.push((name.to_owned(), labels, port_names));
    }
    if deployments == 0 {
        errors.push("no Deployment in deploy/kubernetes".to_owned());
    }

    // Pass 3: Services select a pod template and name its ports.
    for (file, doc) in &objects {
        if s(&doc["kind"]) != Some("Service") {
            continue;
        }
        let name = s(&doc["metadata"]["name"]).unwrap_or("?");
        let selector = str_map(&doc["spec"]["selector"]);
        let target = pod_templates.iter().find(|(_, labels, _)| {
            !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        });
        let Some((_, _, ports)) = target else {
            errors.push(format!("{file}: Service {name} selects no pod template"));
            continue;
        };
        for p in list(&doc["spec"]["ports"]) {
            if let Some(tp) = s(&p["targetPort"]) {
                if !ports.contains(tp) {
                    errors.push(format!(
                        "{file}: Service {name} targetPort {tp:?} is no container port name"
                    ));
                }
            }
        }
    }
    errors
}

#[test]
fn kubernetes_manifests_are_valid() {
    let files = manifest_files();
    let names: Vec<&str> = files.iter().map(|(f, _)| f.as_str()).collect();
    for required in ["deployment.yaml", "configmap.yaml", "secret.yaml"] {
        assert!(names.contains(&required), "missing {required} in {names:?}");
    }
    let errors = check(&files);
    assert!(
        errors.is_empty(),
        "manifest problems:\n{}",
        errors.join("\n")
    );
}

/// Replaces `from` (which must occur) by `to` in manifest `file`, and returns the checker's errors.
fn errors_after(file: &str, from: &str, to: &str) -> Vec<String> {
    let mut files = manifest_files();
    let (_, text) = files
        .iter_mut()
        .find(|(f, _)| f == file)
        .expect("manifest exists");
    assert!(text.contains(from), "{file} does not contain {from:?}");
    *text = text.replacen(from, to, 1);
    check(&files)
}

#[test]
fn checker_rejects_broken_manifests() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "deployment.yaml",
            "add: [\"NET_ADMIN\"]",
            "add: [\"NET_RAW\"]",
            "NET_ADMIN",
        ),
        (
            "deployment.yaml",
            "name: privnet-demo-app-credentials",
            "name: nope",
            "undefined secret",
        ),
        (
            "deployment.yaml",
            "name: privnet-demo-app-config",
            "name: nope",
            "undefined configMap",
        ),
        (
            "deployment.yaml",
            "- key: member.key",
            "- key: member.pem",
            "no key",
        ),
        (
            "deployment.yaml",
            "type: CharDevice",
            "type: File",
            "/dev/net/tun",
        ),
        (
            "deployment.yaml",
            "terminationGracePeriodSeconds: 30",
            "terminationGracePeriodSeconds: x",
            "terminationGracePeriodSeconds",
        ),
        (
            "deployment.yaml",
            "command: [\"privnet\", \"health\"]\n            periodSeconds: 10",
            "command: [\"true\"]\n            periodSeconds: 10",
            "livenessProbe",
        ),
        (
            "deployment.yaml",
            "          restartPolicy: Always\n",
            "",
            "restartPolicy",
        ),
        (
            "deployment.yaml",
            "image: registry.example.invalid/privnet-testapp:0.1.0",
            "image: \"\"",
            "no image",
        ),
        (
            "deployment.yaml",
            "apiVersion: apps/v1",
            "apiVersion: v1",
            "apiVersion",
        ),
        (
            "deployment.yaml",
            "mountPath: /run/privnet",
            "mountPath: /run/privnet\n            - name: ghost\n              mountPath: /x",
            "undefined volume",
        ),
        (
            "secret.yaml",
            "  name: privnet-demo-app-credentials",
            "  name: Bad_Name",
            "DNS",
        ),
        (
            "configmap.yaml",
            "\"/etc/privnet/member.key\"",
            "\"/etc/privnet/other.key\"",
            "no volume provides",
        ),
        (
            "service.yaml",
            "targetPort: privnet",
            "targetPort: nothere",
            "targetPort",
        ),
        ("kustomization.yaml", "  - service.yaml\n", "", "differ"),
        ("configmap.yaml", "data:", "data: [", "invalid YAML"),
        (
            "deployment.yaml",
            "mountPath: /run/privnet",
            "mountPath: /var/run/other",
            "not mounted",
        ),
    ];
    for (file, from, to, needle) in cases {
        let errors = errors_after(file, from, to);
        assert!(
            errors.iter().any(|e| e.contains(needle)),
            "{file}: replacing {from:?} by {to:?} should report {needle:?}, got {errors:?}"
        );
    }
}
