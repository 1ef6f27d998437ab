//! The Dockerfile (one target per role) and the compose file: pinned Debian slim bases,
//! non-root users where the role allows, a HEALTHCHECK on /health, OCI labels carrying
//! the version from `.version`, and a build stage that installs the eBPF toolchain.

use std::collections::BTreeMap;

use super::{assert_no_problems, deploy_dir, read, repo_root, seq_at, str_at, version, yaml_documents};

const OCI_LABELS: &[&str] = &[
    "org.opencontainers.image.version",
    "org.opencontainers.image.created",
    "org.opencontainers.image.revision",
    "org.opencontainers.image.source",
    "org.opencontainers.image.title",
    "org.opencontainers.image.description",
];

/// (target, binary, health port, must run as non-root)
const TARGETS: &[(&str, &str, u16, bool)] = &[
    ("control-plane", "killkrill", 8080, true),
    ("data-plane", "killkrill", 8080, false),
    ("agent", "killkrill-agent", 8081, false),
    ("operator", "killkrill-operator", 8080, true),
];

#[derive(Debug, Default)]
struct Stage {
    name: String,
    /// The image or stage it starts from, with build arguments resolved.
    from: String,
    /// (INSTRUCTION, arguments), continuation lines joined.
    instructions: Vec<(String, String)>,
}

impl Stage {
    fn all(&self, instruction: &str) -> impl Iterator<Item = &str> {
        self.instructions
            .iter()
            .filter(move |(i, _)| i == instruction)
            .map(|(_, arguments)| arguments.as_str())
    }
}

/// Splits a Dockerfile into stages; `ARG`s before the first `FROM` are substituted there.
fn parse_dockerfile(text: &str) -> Vec<Stage> {
    let mut logical_lines = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if pending.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if trimmed.starts_with('#') {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(start) => {
                pending.push_str(start);
                pending.push(' ');
            }
            None => {
                pending.push_str(trimmed);
                logical_lines.push(std::mem::take(&mut pending));
            }
        }
    }
    let mut global_args: BTreeMap<String, String> = BTreeMap::new();
    let mut stages: Vec<Stage> = Vec::new();
    for line in logical_lines {
        let (instruction, arguments) = line.split_once(' ').unwrap_or((&line, ""));
        let (instruction, arguments) = (instruction.to_ascii_uppercase(), arguments.trim().to_owned());
        if instruction == "FROM" {
            let mut words = arguments.split_whitespace();
            let mut image = words.next().unwrap_or("").to_owned();
            for (name, value) in &global_args {
                image = image.replace(&format!("${{{name}}}"), value);
            }
            let name = match (words.next(), words.next()) {
                (Some(keyword), Some(name)) if keyword.eq_ignore_ascii_case("AS") => name.to_owned(),
                _ => String::new(),
            };
            stages.push(Stage { name, from: image, instructions: Vec::new() });
        } else if let Some(stage) = stages.last_mut() {
            stage.instructions.push((instruction, arguments));
        } else if instruction == "ARG"
            && let Some((name, value)) = arguments.split_once('=')
        {
            global_args.insert(name.to_owned(), value.to_owned());
        }
    }
    stages
}

fn is_pinned(image: &str) -> bool {
    let tag = image.rsplit_once(':').map(|(_, tag)| tag).unwrap_or("");
    !tag.is_empty() && tag != "latest" && tag.chars().any(|c| c.is_ascii_digit())
}

fn is_non_root(user: &str) -> bool {
    let name = user.split(':').next().unwrap_or("");
    name.parse::<u32>().is_ok_and(|uid| uid >= 1000)
}

fn dockerfile_problems(stages: &[Stage]) -> Vec<String> {
    let mut problems = Vec::new();
    let stage_names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
    for stage in stages {
        let from_stage = stage_names.contains(&stage.from.as_str());
        if !from_stage && !is_pinned(&stage.from) {
            problems
                .push(format!("stage {}: base image {} is not pinned to a version", stage.name, stage.from));
        }
    }
    let Some(build) = stages.iter().find(|s| s.all("RUN").any(|run| run.contains("cargo build --release")))
    else {
        problems.push("no stage runs cargo build --release".to_owned());
        return problems;
    };
    let runs: String = stages.iter().flat_map(|s| s.all("RUN")).collect::<Vec<_>>().join("\n");
    for needed in ["--locked", "rust-src", "bpf-linker", "llvm-22-dev", "rustup toolchain install nightly"] {
        if !runs.contains(needed) {
            problems.push(format!("the build stages never mention {needed} (userspace/build.rs needs it)"));
        }
    }
    // The binary embeds web/dist only if it exists when cargo runs (docs/adr/0026).
    match stages.iter().find(|s| s.all("RUN").any(|run| run.contains("npm run build"))) {
        None => problems.push("no stage builds the web UI (npm run build)".to_owned()),
        Some(web) => {
            let copied = build.all("COPY").any(|copy| copy.contains(&format!("--from={}", web.name)));
            if !copied {
                problems.push(format!("the build stage does not copy the web UI from stage {}", web.name));
            }
        }
    }
    let runtime_base = |stage: &Stage| {
        let mut from = stage.from.as_str();
        while let Some(parent) = stages.iter().find(|s| s.name == from) {
            from = parent.from.as_str();
        }
        from.to_owned()
    };
    if !runtime_base(build).contains("bookworm") {
        problems.push(format!("the build stage is not on Debian bookworm: {}", runtime_base(build)));
    }
    for (target, binary, port, non_root) in TARGETS {
        let Some(stage) = stages.iter().find(|s| s.name == *target) else {
            problems.push(format!("no target {target}"));
            continue;
        };
        let base = runtime_base(stage);
        if !(base.starts_with("debian:") && base.ends_with("-slim")) {
            problems.push(format!("{target}: runs on {base}, not Debian slim"));
        }
        match stage.all("USER").last() {
            None => problems.push(format!("{target}: no USER")),
            Some(user) if *non_root && !is_non_root(user) => {
                problems.push(format!("{target}: USER {user} is not a UID of 1000 or more"))
            }
            Some(_) => {}
        }
        let health = stage.all("HEALTHCHECK").last().unwrap_or("");
        if !health.contains(&format!("127.0.0.1:{port}/health")) {
            problems.push(format!("{target}: HEALTHCHECK does not ask /health on port {port}: {health:?}"));
        }
        let labels = stage.all("LABEL").collect::<Vec<_>>().join(" ");
        for label in OCI_LABELS {
            if !labels.contains(&format!("{label}=")) {
                problems.push(format!("{target}: no label {label}"));
            }
        }
        if !labels.contains("org.opencontainers.image.version=\"${VERSION}\"")
            || !stage.all("ARG").any(|a| a.starts_with("VERSION"))
        {
            problems
                .push(format!("{target}: the version label does not come from the VERSION build argument"));
        }
        if !stage.all("COPY").any(|copy| copy.starts_with("--from=") && copy.contains(&format!("/{binary} ")))
        {
            problems.push(format!("{target}: does not copy {binary} from the build stage"));
        }
        if !stage.all("ENTRYPOINT").any(|entry| entry.contains(&format!("/usr/local/bin/{binary}\""))) {
            problems.push(format!("{target}: ENTRYPOINT is not {binary}"));
        }
    }
    problems
}

#[test]
fn dockerfile_targets_are_pinned_labelled_health_checked_and_non_root_where_required() {
    let stages = parse_dockerfile(&read(&deploy_dir().join("docker/Dockerfile")));
    assert!(stages.len() >= 4, "multi-stage: {stages:?}");
    assert_no_problems("deploy/docker/Dockerfile", &dockerfile_problems(&stages));
}

#[test]
fn a_root_control_plane_or_an_unpinned_base_is_reported() {
    let text = read(&deploy_dir().join("docker/Dockerfile"))
        .replace("ARG DEBIAN_IMAGE=debian:12.12-slim", "ARG DEBIAN_IMAGE=debian:latest")
        .replacen("USER 10001:10001", "USER root", 1);
    let problems = dockerfile_problems(&parse_dockerfile(&text));
    for expected in [
        "base image debian:latest is not pinned",
        "control-plane: USER root is not a UID",
        "control-plane: runs on debian:latest",
    ] {
        assert!(problems.iter().any(|p| p.contains(expected)), "{expected:?} not in {problems:#?}");
    }
    let without_health =
        read(&deploy_dir().join("docker/Dockerfile")).replace("HEALTHCHECK", "# HEALTHCHECK");
    let problems = dockerfile_problems(&parse_dockerfile(&without_health));
    assert_eq!(problems.iter().filter(|p| p.contains("HEALTHCHECK does not ask")).count(), TARGETS.len());
    let without_ui =
        read(&deploy_dir().join("docker/Dockerfile")).replace("COPY --from=web", "# COPY --from=web");
    let problems = dockerfile_problems(&parse_dockerfile(&without_ui));
    assert!(problems.iter().any(|p| p.contains("does not copy the web UI")), "{problems:#?}");
}

#[test]
fn the_build_context_leaves_out_build_outputs() {
    let ignored = read(&repo_root().join(".dockerignore"));
    for path in ["target/", ".git/", "data/", "web/node_modules/"] {
        assert!(ignored.lines().any(|line| line.trim() == path), ".dockerignore does not leave out {path}");
    }
}

#[test]
fn compose_runs_killkrill_postgres_and_redis_without_committed_secrets() {
    let text = read(&deploy_dir().join("compose.yaml"));
    let compose = &yaml_documents(&text).expect("compose.yaml parses")[0];
    let version = version();
    let killkrill = &compose["services"]["killkrill"];
    let context = deploy_dir().join(str_at(killkrill, &["build", "context"]).expect("build context"));
    let dockerfile = str_at(killkrill, &["build", "dockerfile"]).expect("dockerfile");
    assert!(context.join(dockerfile).is_file(), "{dockerfile} is not in the build context");
    assert_eq!(str_at(killkrill, &["build", "target"]), Some("control-plane"));
    assert_eq!(str_at(killkrill, &["build", "args", "VERSION"]), Some(version.as_str()));
    assert_eq!(str_at(killkrill, &["image"]), Some(format!("killkrill-control-plane:{version}").as_str()));
    assert_eq!(seq_at(killkrill, &["cap_drop"]).first().and_then(|v| v.as_str()), Some("ALL"));
    assert!(seq_at(killkrill, &["cap_add"]).is_empty(), "the socket path needs no capability");
    assert_eq!(killkrill["read_only"].as_bool(), Some(true));
    let ports: Vec<&str> = seq_at(killkrill, &["ports"]).iter().filter_map(|p| p.as_str()).collect();
    assert!(ports.contains(&"8080:8080") && ports.iter().any(|p| p.ends_with(":514/udp")), "{ports:?}");
    for service in ["postgres", "redis"] {
        let image = str_at(&compose["services"][service], &["image"]).unwrap_or("");
        assert!(is_pinned(image), "{service}: image {image} is not pinned");
        assert!(
            compose["services"][service]["healthcheck"]["test"].is_sequence(),
            "{service}: no healthcheck"
        );
    }
    let password =
        str_at(&compose["services"]["postgres"], &["environment", "POSTGRES_PASSWORD"]).unwrap_or("");
    assert!(
        password.starts_with("${POSTGRES_PASSWORD:?"),
        "the password must come from the caller, not the file"
    );
    let url = str_at(killkrill, &["environment", "DATABASE_URL"]).unwrap_or("");
    assert!(url.contains(":${POSTGRES_PASSWORD:?"), "DATABASE_URL must use the caller's password: {url}");
}
