//! The deployment artefacts (`Dockerfile`, `deploy/compose.yaml`, `deploy/k8s/`) checked
//! against the shop they deploy, without Docker or a cluster: every YAML file parses, every
//! `SHOP__...` variable they set is a setting of `app/config/default.toml`, every port and
//! probe path is one the shop serves, each process's placement is one the shop accepts
//! (`Placement::resolve`, the check `shop serve` itself runs), every placement and routing URL
//! reaches a process that runs that context on the right listener, and every kustomization
//! names files that exist. Schema validation (Kubernetes, compose) is `scripts/deploy-check.sh`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_norway::Value;
use shop::placement::{ALL, Placement};
use shop::settings::PlacementSettings;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
}

/// A path from the root, with `/` separators, for messages.
fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

/// Every YAML file under `deploy/`, each as its documents, with YAML merge keys applied.
fn yaml_files() -> BTreeMap<PathBuf, Vec<Value>> {
    let mut files = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root().join("deploy")) {
        let entry = entry.expect("deploy/ is readable");
        let path = entry.path();
        if !matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            continue;
        }
        let text = std::fs::read_to_string(path).expect("readable");
        let mut documents = Vec::new();
        for document in serde_norway::Deserializer::from_str(&text) {
            let mut value = <Value as serde::Deserialize>::deserialize(document)
                .unwrap_or_else(|error| panic!("{} does not parse: {error}", relative(path)));
            value
                .apply_merge()
                .unwrap_or_else(|error| panic!("{}: bad merge key: {error}", relative(path)));
            if !value.is_null() {
                documents.push(value);
            }
        }
        assert!(!documents.is_empty(), "{} is empty", relative(path));
        files.insert(path.to_owned(), documents);
    }
    files
}

fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|items| items.iter().map(text).collect())
        .unwrap_or_default()
}

/// The listeners, from the defaults: the public one (API, `/healthz`, `/readyz`) and the
/// internal one of split deployments.
struct Ports {
    public: u16,
    internal: u16,
}

fn defaults() -> toml::Table {
    std::fs::read_to_string(root().join("app/config/default.toml"))
        .expect("readable")
        .parse()
        .expect("default.toml is TOML")
}

fn ports() -> Ports {
    let defaults = defaults();
    let port = |section: &str| {
        let port = defaults[section]["port"].as_integer().expect("a port");
        u16::try_from(port).expect("a TCP port")
    };
    Ports {
        public: port("server"),
        internal: port("internal"),
    }
}

/// The probe paths, as the shop routes them (`app/src/ops.rs`).
const LIVENESS: &str = "/healthz";
const READINESS: &str = "/readyz";

#[test]
fn the_probe_paths_are_routes_of_the_shop() {
    let ops = std::fs::read_to_string(root().join("app/src/ops.rs")).expect("readable");
    for path in [LIVENESS, READINESS] {
        assert!(
            ops.contains(&format!("resource(\"{path}\")")),
            "app/src/ops.rs no longer routes {path}, which the deployments probe"
        );
    }
}

/// `SHOP__DATABASE__ROLES__CONNECT_AS_ROLE` is the key `database.roles.connect_as_role`;
/// `SHOP__DATA_DIR` the top-level `data_dir`. `None` when it names no setting.
fn setting_of(variable: &str, defaults: &toml::Table) -> Option<String> {
    let path = variable.strip_prefix("SHOP__")?;
    let segments: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
    let (last, sections) = segments.split_last()?;
    let mut table = defaults;
    for section in sections {
        table = table.get(section)?.as_table()?;
    }
    match table.get(last)? {
        toml::Value::Table(_) => None,
        _ => Some(segments.join(".")),
    }
}

/// Variables with one underscore after `SHOP` that the shop reads (docs/CONFIGURATION.md).
const SHOP_VARIABLES: [&str; 2] = ["SHOP_CONFIG", "SHOP_ADMIN_PASSWORD"];

/// One `shop` container or compose service: what it runs and the variables it gets.
#[derive(Debug, Clone)]
struct Process {
    /// Where it is declared, for messages.
    origin: String,
    args: Vec<String>,
    /// Values of plain variables; secrets as `<secret>`.
    env: BTreeMap<String, String>,
}

impl Process {
    fn is_serve(&self) -> bool {
        self.args.first().is_none_or(|command| command == "serve")
    }

    fn contexts_flag(&self) -> Option<&str> {
        let at = self.args.iter().position(|arg| arg == "--contexts")?;
        self.args.get(at + 1).map(String::as_str)
    }

    fn var(&self, name: &str) -> Option<&str> {
        self.env
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The placement it runs, checked as `shop` checks it at start.
    fn placement(&self) -> Placement {
        let mut settings = PlacementSettings {
            contexts: self
                .contexts_flag()
                .or(self.var("SHOP__PLACEMENT__CONTEXTS"))
                .unwrap_or("all")
                .to_owned(),
            ..PlacementSettings::default()
        };
        for context in ALL {
            let variable = format!("SHOP__PLACEMENT__{}_URL", context.to_ascii_uppercase());
            if let Some(url) = self.var(&variable) {
                *settings.url_mut(context).expect("a context") = url.to_owned();
            }
        }
        let broker = self.var("SHOP__BROKER__URL").is_some();
        Placement::resolve(&settings, broker).unwrap_or_else(|error| {
            panic!("{}: the shop refuses its placement: {error}", self.origin)
        })
    }

    /// Checks what every process needs, whatever its file.
    fn check(&self, ports: &Ports) {
        let origin = &self.origin;
        let command = self.args.first().map_or("serve", String::as_str);
        assert!(
            ["serve", "migrate", "admin"].contains(&command),
            "{origin}: `shop {command}` is not a command of the shop"
        );
        if let (Some(flag), Some(variable)) =
            (self.contexts_flag(), self.var("SHOP__PLACEMENT__CONTEXTS"))
        {
            assert_eq!(
                flag, variable,
                "{origin}: --contexts and SHOP__PLACEMENT__CONTEXTS disagree"
            );
        }
        let placement = self.placement();
        for (variable, port) in [
            ("SHOP__SERVER__PORT", ports.public),
            ("SHOP__INTERNAL__PORT", ports.internal),
        ] {
            if let Some(value) = self.var(variable) {
                assert_eq!(
                    value,
                    port.to_string(),
                    "{origin}: {variable} must be {port}, the port the files probe and expose"
                );
            }
        }
        for variable in ["SHOP__SERVER__HOST", "SHOP__INTERNAL__HOST"] {
            assert_eq!(
                self.var(variable),
                Some("0.0.0.0"),
                "{origin}: {variable} must be 0.0.0.0 in a container"
            );
        }
        assert!(
            self.var("SHOP__DATABASE__URL").is_some(),
            "{origin}: every deployed process uses Postgres (SHOP__DATABASE__URL)"
        );
        if placement.is_local("auth") {
            assert!(
                self.var("SHOP__AUTH__JWT_SECRET").is_some(),
                "{origin}: auth runs here on Postgres, so SHOP__AUTH__JWT_SECRET is required"
            );
        }
        if self.is_serve() && placement.is_split() {
            assert!(
                self.var("SHOP__INTERNAL__TOKEN").is_some(),
                "{origin}: a split process needs SHOP__INTERNAL__TOKEN"
            );
        }
        if self.var("SHOP__DATABASE__ROLES__CONNECT_AS_ROLE") == Some("true") {
            assert!(
                self.var("SHOP__DATABASE__ROLES__PASSWORD").is_some(),
                "{origin}: connecting as the context roles needs their password"
            );
        }
    }

    /// `(context, url)` of each `placement.*_url` (internal) and `routing.*_url` (public).
    fn urls(&self) -> Vec<(&'static str, bool, &str)> {
        let mut urls = Vec::new();
        for context in ALL {
            let upper = context.to_ascii_uppercase();
            for (section, internal) in [("PLACEMENT", true), ("ROUTING", false)] {
                if let Some(url) = self.var(&format!("SHOP__{section}__{upper}_URL")) {
                    urls.push((context, internal, url));
                }
            }
        }
        urls
    }
}

/// `http://host:port` of a URL, the port defaulted to 80.
fn host_and_port(url: &str) -> (String, u16) {
    let parsed = url::Url::parse(url).unwrap_or_else(|error| panic!("{url}: {error}"));
    (
        parsed.host_str().expect("a host").to_owned(),
        parsed.port_or_known_default().expect("a port"),
    )
}

/// Each secret that must come from the environment or a Secret, never from the file.
const SECRETS: [&str; 4] = [
    "SHOP__DATABASE__URL",
    "SHOP__DATABASE__ROLES__PASSWORD",
    "SHOP__AUTH__JWT_SECRET",
    "SHOP__INTERNAL__TOKEN",
];

#[test]
fn every_variable_the_deployments_set_is_a_setting() {
    let defaults = defaults();
    let mut variables: BTreeSet<(String, String)> = BTreeSet::new();
    for (path, documents) in yaml_files() {
        for document in &documents {
            collect_variables(document, &relative(&path), &mut variables);
        }
    }
    for name in dockerfile_env().into_keys() {
        variables.insert(("Dockerfile".to_owned(), name));
    }
    let shop_variables = variables
        .iter()
        .filter(|(_, name)| name.starts_with("SHOP"))
        .count();
    assert!(
        shop_variables > 40,
        "only {shop_variables} SHOP variables found in the deployments; the collector is broken"
    );
    let unknown: Vec<String> = variables
        .iter()
        .filter(|(_, name)| {
            if name.starts_with("SHOP__") {
                setting_of(name, &defaults).is_none()
            } else if name.starts_with("SHOP_") {
                !SHOP_VARIABLES.contains(&name.as_str())
            } else {
                false
            }
        })
        .map(|(origin, name)| format!("{origin}: {name}"))
        .collect();
    assert!(
        unknown.is_empty(),
        "variables the shop does not read (keys of app/config/default.toml, as \
         SHOP__SECTION__KEY; the shop ignores unknown ones silently):\n  {}",
        unknown.join("\n  ")
    );
}

/// Variables set by compose `environment`, Kubernetes `env` and ConfigMap `data`.
fn collect_variables(value: &Value, origin: &str, into: &mut BTreeSet<(String, String)>) {
    match value {
        Value::Mapping(mapping) => {
            for (key, child) in mapping {
                match (key.as_str(), child) {
                    (Some("environment"), Value::Mapping(env)) => {
                        for name in env.keys() {
                            into.insert((origin.to_owned(), text(name)));
                        }
                    }
                    (Some("environment"), Value::Sequence(env)) => {
                        for item in env {
                            let item = text(item);
                            let name = item.split('=').next().unwrap_or_default();
                            into.insert((origin.to_owned(), name.to_owned()));
                        }
                    }
                    (Some("env"), Value::Sequence(env)) => {
                        for item in env {
                            into.insert((origin.to_owned(), text(&item["name"])));
                        }
                    }
                    (Some("data"), Value::Mapping(data))
                        if value.get("kind").and_then(Value::as_str) == Some("ConfigMap") =>
                    {
                        for name in data.keys() {
                            into.insert((origin.to_owned(), text(name)));
                        }
                    }
                    _ => collect_variables(child, origin, into),
                }
            }
        }
        Value::Sequence(items) => {
            for item in items {
                collect_variables(item, origin, into);
            }
        }
        _ => {}
    }
}

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
fn dockerfile() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("Dockerfile")).expect("a Dockerfile");
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    instructions
}

fn dockerfile_env() -> BTreeMap<String, String> {
    dockerfile()
        .iter()
        .filter_map(|line| line.strip_prefix("ENV "))
        .flat_map(str::split_whitespace)
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

#[test]
fn the_image_runs_the_shop_as_a_non_root_user_and_checks_its_liveness() {
    let ports = ports();
    let instructions = dockerfile();
    let find = |keyword: &str| -> Vec<&String> {
        instructions
            .iter()
            .filter(|line| line.starts_with(&format!("{keyword} ")))
            .collect()
    };
    assert!(
        find("FROM").len() >= 2,
        "the Dockerfile is multi-stage: a build and a runtime image"
    );
    assert!(
        instructions
            .iter()
            .any(|line| line.contains("cargo build --release --locked -p shop")),
        "the image is a locked release build of the shop"
    );
    let user = find("USER");
    let user = user.last().expect("a USER");
    assert!(
        !user.contains("root") && !user.ends_with(" 0") && !user.contains(" 0:"),
        "the shop runs as a non-root user: {user}"
    );
    let exposed: BTreeSet<u16> = find("EXPOSE")
        .iter()
        .flat_map(|line| line.split_whitespace().skip(1))
        .map(|port| port.parse().expect("a port"))
        .collect();
    assert_eq!(exposed, BTreeSet::from([ports.public, ports.internal]));
    let health = find("HEALTHCHECK");
    let health = health.first().expect("a HEALTHCHECK");
    assert!(
        health.contains(&format!("127.0.0.1:{}{LIVENESS}", ports.public)),
        "the health check asks {LIVENESS} on the public port: {health}"
    );
    assert_eq!(
        find("ENTRYPOINT").last().map(|line| line.as_str()),
        Some("ENTRYPOINT [\"shop\"]")
    );
    assert_eq!(
        find("CMD").last().map(|line| line.as_str()),
        Some("CMD [\"serve\"]")
    );
    let env = dockerfile_env();
    assert_eq!(
        env.get("SHOP__SERVER__HOST").map(String::as_str),
        Some("0.0.0.0")
    );
    assert_eq!(
        env.get("SHOP__SERVER__PORT"),
        Some(&ports.public.to_string())
    );
    let ignored = std::fs::read_to_string(root().join(".dockerignore")).expect("a .dockerignore");
    for kept_out in ["target/", "data/"] {
        assert!(
            ignored.lines().any(|line| line.trim() == kept_out),
            ".dockerignore keeps {kept_out} out of the build context"
        );
    }
}

/// A compose service or a Kubernetes container runs the shop when its image is `shop`.
fn is_shop_image(image: &str) -> bool {
    let name = image.rsplit('/').next().unwrap_or(image);
    name == "shop" || name.starts_with("shop:")
}

#[test]
fn the_compose_profiles_run_processes_the_shop_accepts() {
    let ports = ports();
    let path = root().join("deploy/compose.yaml");
    let files = yaml_files();
    let compose = &files.get(&path).expect("deploy/compose.yaml")[0];
    let services = compose["services"].as_mapping().expect("services");
    let mut processes = BTreeMap::new();
    let mut profiles: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, service) in services {
        let name = text(name);
        for profile in strings(&service["profiles"]) {
            profiles.entry(profile).or_default().insert(name.clone());
        }
        let image = service["image"].as_str().unwrap_or_default();
        if !is_shop_image(image) {
            continue;
        }
        let env: BTreeMap<String, String> = service["environment"]
            .as_mapping()
            .expect("environment as a mapping")
            .iter()
            .map(|(key, value)| (text(key), text(value)))
            .collect();
        for secret in SECRETS {
            if let Some(value) = env.get(secret) {
                assert!(
                    value.contains("${") && value.contains(":?"),
                    "compose service {name}: {secret} must come from deploy/.env as a required \
                     ${{VAR:?...}}, never be written in the file"
                );
            }
        }
        let process = Process {
            origin: format!("compose service {name}"),
            args: strings(&service["command"]),
            env,
        };
        process.check(&ports);
        if process.is_serve() {
            let test = strings(&service["healthcheck"]["test"]).join(" ");
            assert!(
                test.contains(&format!("127.0.0.1:{}{LIVENESS}", ports.public)),
                "{}: the health check asks {LIVENESS} on the public port: {test}",
                process.origin
            );
            let depends = &service["depends_on"];
            assert_eq!(
                depends["migrate"]["condition"].as_str(),
                Some("service_completed_successfully"),
                "{}: starts once migrate has succeeded",
                process.origin
            );
            assert_eq!(
                depends["postgres"]["condition"].as_str(),
                Some("service_healthy")
            );
            if process.var("SHOP__BROKER__URL").is_some() {
                assert_eq!(
                    depends["nats"]["condition"].as_str(),
                    Some("service_healthy")
                );
            }
        }
        processes.insert(name, process);
    }
    assert_eq!(
        profiles.keys().collect::<Vec<_>>(),
        ["monolith", "split"],
        "compose has the two profiles"
    );
    // Every URL reaches, in the same profile, a service running that context on the listener
    // the URL is for.
    for (profile, members) in &profiles {
        for name in members {
            let Some(process) = processes.get(name) else {
                continue;
            };
            for (context, internal, url) in process.urls() {
                let (host, port) = host_and_port(url);
                let target = processes
                    .get(&host)
                    .filter(|_| members.contains(&host))
                    .unwrap_or_else(|| {
                        panic!(
                            "{}: {url}: no shop service {host} in profile {profile}",
                            process.origin
                        )
                    });
                assert!(
                    target.is_serve() && target.placement().is_local(context),
                    "{}: {url}: {host} does not run {context}",
                    process.origin
                );
                let expected = if internal {
                    ports.internal
                } else {
                    ports.public
                };
                assert_eq!(port, expected, "{}: {url}: wrong listener", process.origin);
            }
        }
    }
    let monolith = &profiles["monolith"];
    assert!(!monolith.contains("nats"), "the monolith needs no broker");
    let runs_all = |members: &BTreeSet<String>| {
        let mut contexts = BTreeSet::new();
        for member in members {
            if let Some(process) = processes.get(member).filter(|p| p.is_serve()) {
                contexts.extend(process.placement().local());
            }
        }
        contexts
    };
    for (profile, members) in &profiles {
        assert_eq!(
            runs_all(members),
            ALL.into_iter().collect(),
            "profile {profile} runs every context"
        );
        assert!(
            members.contains("postgres") && members.contains("migrate"),
            "profile {profile} has Postgres and the migration"
        );
    }
}

/// A kustomization and every resource it pulls in, recursively.
fn kustomize(folder: &Path, files: &BTreeMap<PathBuf, Vec<Value>>) -> Vec<Value> {
    let path = folder.join("kustomization.yaml");
    let kustomization = &files
        .get(&path)
        .unwrap_or_else(|| panic!("{} is missing", relative(&path)))[0];
    let mut documents = Vec::new();
    let mut listed = BTreeSet::new();
    for resource in strings(&kustomization["resources"]) {
        let target = folder.join(&resource);
        let normalised = std::fs::canonicalize(&target).unwrap_or_else(|error| {
            panic!(
                "{}: resource {resource} does not exist ({error})",
                relative(&path)
            )
        });
        if normalised.is_dir() {
            documents.extend(kustomize(&normalised, files));
        } else {
            listed.insert(normalised.clone());
            documents.extend(files[&normalised].iter().cloned());
        }
    }
    for patch in kustomization["patches"].as_sequence().into_iter().flatten() {
        if let Some(file) = patch["path"].as_str() {
            assert!(
                folder.join(file).is_file(),
                "{}: patch {file} does not exist",
                relative(&path)
            );
        }
    }
    // A manifest next to a kustomization that it does not list would never be applied.
    for file in files.keys() {
        if file.parent() == Some(folder) && *file != path {
            assert!(
                listed.contains(file),
                "{}: {} is not listed in resources",
                relative(&path),
                relative(file)
            );
        }
    }
    documents
}

fn kind(document: &Value) -> &str {
    document["kind"].as_str().unwrap_or_default()
}

fn name(document: &Value) -> String {
    text(&document["metadata"]["name"])
}

/// The pod template of a workload.
fn pod(document: &Value) -> Option<&Value> {
    match kind(document) {
        "Deployment" | "StatefulSet" | "DaemonSet" | "Job" => Some(&document["spec"]["template"]),
        _ => None,
    }
}

fn selects(selector: &Value, labels: &Value) -> bool {
    selector.as_mapping().is_some_and(|selector| {
        !selector.is_empty()
            && selector
                .iter()
                .all(|(key, value)| labels.get(key) == Some(value))
    })
}

#[test]
fn the_kubernetes_overlays_run_processes_the_shop_accepts_and_probe_its_routes() {
    let ports = ports();
    let files = yaml_files();
    let overlays = root().join("deploy/k8s/overlays");
    let mut checked = 0;
    for overlay in ["monolith", "split"] {
        let folder = std::fs::canonicalize(overlays.join(overlay)).expect("the overlay exists");
        let documents = kustomize(&folder, &files);
        let config_maps: BTreeMap<String, &Value> = documents
            .iter()
            .filter(|document| kind(document) == "ConfigMap")
            .map(|document| (name(document), &document["data"]))
            .collect();
        let secrets: BTreeSet<(String, String)> = documents
            .iter()
            .filter(|document| kind(document) == "Secret")
            .flat_map(|document| {
                let name = name(document);
                document["stringData"]
                    .as_mapping()
                    .into_iter()
                    .flatten()
                    .map(move |(key, _)| (name.clone(), text(key)))
            })
            .collect();
        // (Service name, its port, the selected pod's container port, the processes there.)
        let mut services: BTreeMap<String, Vec<(u16, u16, Vec<Process>)>> = BTreeMap::new();
        let mut workloads = Vec::new();
        for document in &documents {
            let Some(template) = pod(document) else {
                continue;
            };
            let workload = format!("{overlay}: {} {}", kind(document), name(document));
            let spec = &template["spec"];
            let mut processes = Vec::new();
            let mut container_ports: BTreeMap<String, u16> = BTreeMap::new();
            for (field, init) in [("initContainers", true), ("containers", false)] {
                for container in spec[field].as_sequence().into_iter().flatten() {
                    for port in container["ports"].as_sequence().into_iter().flatten() {
                        let number = port["containerPort"].as_u64().expect("a port") as u16;
                        container_ports.insert(text(&port["name"]), number);
                        container_ports.insert(number.to_string(), number);
                    }
                    if !is_shop_image(container["image"].as_str().unwrap_or_default()) {
                        continue;
                    }
                    let origin = format!("{workload}, container {}", text(&container["name"]));
                    let process = Process {
                        origin: origin.clone(),
                        args: strings(&container["args"]),
                        env: pod_env(container, &config_maps, &secrets, &origin),
                    };
                    process.check(&ports);
                    if init {
                        assert_eq!(
                            process.args,
                            ["migrate"],
                            "{origin}: init containers migrate"
                        );
                    } else {
                        check_shop_container(container, &process, &ports);
                        processes.push(process);
                    }
                    checked += 1;
                }
            }
            workloads.push((
                template["metadata"]["labels"].clone(),
                container_ports,
                processes,
            ));
        }
        for document in documents
            .iter()
            .filter(|document| kind(document) == "Service")
        {
            let service = name(document);
            let selector = &document["spec"]["selector"];
            let selected: Vec<_> = workloads
                .iter()
                .filter(|(labels, _, _)| selects(selector, labels))
                .collect();
            assert!(
                !selected.is_empty(),
                "{overlay}: Service {service} selects no pod"
            );
            for port in document["spec"]["ports"]
                .as_sequence()
                .into_iter()
                .flatten()
            {
                let number = port["port"].as_u64().expect("a port") as u16;
                let target = port.get("targetPort").map_or(number.to_string(), text);
                for (_, container_ports, processes) in &selected {
                    let container_port = *container_ports.get(&target).unwrap_or_else(|| {
                        panic!("{overlay}: Service {service} targets {target}, which its pods do not open")
                    });
                    services.entry(service.clone()).or_default().push((
                        number,
                        container_port,
                        processes.clone(),
                    ));
                }
            }
        }
        // Every URL reaches a Service whose pods run that context, on the right listener.
        for (_, _, processes) in &workloads {
            for process in processes {
                for (context, internal, url) in process.urls() {
                    let (host, port) = host_and_port(url);
                    let expected = if internal {
                        ports.internal
                    } else {
                        ports.public
                    };
                    let reaches = services.get(&host).is_some_and(|targets| {
                        targets.iter().any(|(number, container_port, processes)| {
                            *number == port
                                && *container_port == expected
                                && !processes.is_empty()
                                && processes.iter().all(|p| p.placement().is_local(context))
                        })
                    });
                    assert!(
                        reaches,
                        "{}: {url} does not reach {context}'s {} listener",
                        process.origin,
                        if internal { "internal" } else { "public" }
                    );
                }
            }
        }
        let contexts: BTreeSet<&str> = workloads
            .iter()
            .flat_map(|(_, _, processes)| processes)
            .flat_map(|process| process.placement().local().collect::<Vec<_>>())
            .collect();
        assert_eq!(
            contexts,
            ALL.into_iter().collect(),
            "{overlay} runs every context"
        );
    }
    assert!(checked >= 8, "only {checked} shop containers checked");
}

/// A container's variables: its ConfigMaps (`envFrom`), then `env`; secrets as `<secret>`.
fn pod_env(
    container: &Value,
    config_maps: &BTreeMap<String, &Value>,
    secrets: &BTreeSet<(String, String)>,
    origin: &str,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for source in container["envFrom"].as_sequence().into_iter().flatten() {
        let map = text(&source["configMapRef"]["name"]);
        let data = config_maps
            .get(&map)
            .unwrap_or_else(|| panic!("{origin}: ConfigMap {map} is not in the overlay"));
        for (key, value) in data.as_mapping().into_iter().flatten() {
            env.insert(text(key), text(value));
        }
    }
    for item in container["env"].as_sequence().into_iter().flatten() {
        let variable = text(&item["name"]);
        let value = if let Some(value) = item.get("value") {
            assert!(
                !SECRETS.contains(&variable.as_str()),
                "{origin}: {variable} is a secret: take it from the Secret"
            );
            text(value)
        } else {
            let reference = &item["valueFrom"]["secretKeyRef"];
            let key = (text(&reference["name"]), text(&reference["key"]));
            assert!(
                secrets.contains(&key),
                "{origin}: {variable} names {key:?}, which no Secret of the overlay has"
            );
            "<secret>".to_owned()
        };
        env.insert(variable, value);
    }
    for secret in SECRETS {
        if let Some(value) = env.get(secret) {
            assert_eq!(
                value, "<secret>",
                "{origin}: {secret} must come from a Secret"
            );
        }
    }
    env
}

/// Ports, probes and resources of a serving shop container.
fn check_shop_container(container: &Value, process: &Process, ports: &Ports) {
    let origin = &process.origin;
    let opened: BTreeMap<String, u16> = container["ports"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|port| {
            (
                text(&port["name"]),
                port["containerPort"].as_u64().expect("a port") as u16,
            )
        })
        .collect();
    let mut expected = BTreeMap::from([("http".to_owned(), ports.public)]);
    if process.placement().is_split() {
        expected.insert("internal".to_owned(), ports.internal);
    }
    assert_eq!(
        opened, expected,
        "{origin}: opens the public port, and the internal one where it serves ports"
    );
    for (probe, path) in [
        ("readinessProbe", READINESS),
        ("livenessProbe", LIVENESS),
        ("startupProbe", LIVENESS),
    ] {
        let get = &container[probe]["httpGet"];
        if probe == "startupProbe" && get.is_null() {
            continue;
        }
        assert_eq!(
            get["path"].as_str(),
            Some(path),
            "{origin}: {probe} asks {path}"
        );
        let port = text(&get["port"]);
        assert!(
            port == "http" || port == ports.public.to_string(),
            "{origin}: {probe} is on the public port, not {port}"
        );
    }
    for bound in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                !container["resources"][bound][resource].is_null(),
                "{origin}: resources.{bound}.{resource} is set"
            );
        }
    }
}

#[test]
fn the_committed_secrets_are_placeholders() {
    for (path, documents) in yaml_files() {
        for document in documents
            .iter()
            .filter(|document| kind(document) == "Secret")
        {
            assert!(
                document["data"].is_null(),
                "{}: Secret values go in stringData, as placeholders",
                relative(&path)
            );
            for (key, value) in document["stringData"].as_mapping().into_iter().flatten() {
                assert_eq!(
                    text(value),
                    "REPLACE_ME",
                    "{}: {} must stay a placeholder in the repository",
                    relative(&path),
                    text(key)
                );
            }
        }
    }
}
