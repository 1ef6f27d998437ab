//! `killkrill-operator`: `crd` prints the Ingestor CRD; `run` runs the controller.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use futures::FutureExt as _;
use killkrill_operator::controller::{self, Context};
use killkrill_operator::crd::{Ingestor, crd_yaml};
use killkrill_operator::http::{ApiCheck, HttpState, router};
use killkrill_operator::telemetry::{Metrics, init_logging};
use killkrill_operator::{Error, VERSION};
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::net::TcpListener;
use tracing::{error, info, warn};

#[derive(Debug, Parser)]
#[command(
    name = "killkrill-operator",
    version = VERSION,
    about = "Kubernetes operator for Killkrill Ingestors",
    // Without a subcommand it runs (the image's entrypoint is the bare binary).
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the Ingestor CustomResourceDefinition as YAML.
    Crd,
    /// Run the controller (in-cluster, or from a kubeconfig) with /health, /ready, /metrics;
    /// the default without a subcommand.
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Address of /health, /ready and /metrics.
    #[arg(long, env = "KILLKRILL_OPERATOR_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Address of the scrape-only port (also /health and /ready); `off` disables it.
    #[arg(long, env = "KILLKRILL_OPERATOR_METRICS_LISTEN", default_value = "0.0.0.0:9090")]
    metrics_listen: String,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "KILLKRILL_OPERATOR_NAMESPACE")]
    namespace: Option<String>,
    /// Kubeconfig file; without it, KUBECONFIG, ~/.kube/config, then the in-cluster account.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Log level or tracing filter.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    log_level: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run(cli.run)) {
        Command::Crd => match crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("killkrill-operator: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => {
            if let Err(error) = init_logging(&args.log_level) {
                eprintln!("killkrill-operator: {error}");
                return ExitCode::from(2);
            }
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("killkrill-operator: cannot start the runtime: {error}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    error!(error = format!("{error:#}"), "Operator stopped.");
                    let config_error =
                        error.downcast_ref::<Error>().is_some_and(|e| matches!(e, Error::Config(_)));
                    if config_error { ExitCode::from(2) } else { ExitCode::FAILURE }
                }
            }
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let metrics_listen: Option<SocketAddr> = match args.metrics_listen.as_str() {
        "off" => None,
        text => Some(text.parse().map_err(|error| {
            Error::Config(format!("--metrics-listen {text:?} is not ADDR:PORT or off: {error}"))
        })?),
    };
    let client = kube_client(args.kubeconfig.as_deref()).await?;
    let metrics = Arc::new(Metrics::new());
    let http_state = HttpState::new(metrics.clone());

    let api_listener = TcpListener::bind(args.listen)
        .await
        .map_err(|source| Error::Io { context: format!("cannot listen on {}", args.listen), source })?;
    info!(address = %api_listener.local_addr()?, "API listening.");
    tokio::spawn(serve(api_listener, http_state.clone()));
    if let Some(address) = metrics_listen {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| Error::Io { context: format!("cannot listen on {address}"), source })?;
        info!(address = %listener.local_addr()?, "Metrics listening.");
        tokio::spawn(serve(listener, http_state.clone()));
    }
    tokio::spawn(check_api(client.clone(), args.namespace.clone(), http_state));

    info!(
        version = VERSION,
        namespace = args.namespace.as_deref().unwrap_or("(all)"),
        "Controller starting."
    );
    let context = Arc::new(Context::new(client.clone(), metrics));
    let shutdown = shutdown_signal().boxed().shared();
    let controller = controller::run(client, context, args.namespace.as_deref(), shutdown.clone());
    // kube's graceful shutdown waits for its watches, which never finish while the API
    // server is unreachable: after the grace period the process stops regardless.
    let grace_expired = async {
        shutdown.await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        () = controller => info!("Controller stopped."),
        () = grace_expired => warn!(grace_s = SHUTDOWN_GRACE.as_secs(), "Controller still busy after the grace period; stopping."),
    }
    Ok(())
}

/// How long running reconciles get to finish after SIGTERM or SIGINT.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            // Without a SIGTERM handler only SIGINT can stop it; say so and keep running.
            Err(error) => {
                warn!(error = %error, "Cannot listen for SIGTERM.");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    info!("Shutdown requested.");
}

async fn kube_client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("using kubeconfig {}", path.display()))?
        }
        None => Config::infer().await.context("no kubeconfig and not running in a cluster")?,
    };
    Client::try_from(config).context("building the Kubernetes client")
}

async fn serve(listener: TcpListener, state: HttpState) {
    if let Err(error) = axum::serve(listener, router(state)).await {
        error!(error = %error, "HTTP server stopped.");
    }
}

/// Readiness: the operator is ready while it can list Ingestors (API reachable, CRD
/// installed, RBAC granted).
async fn check_api(client: Client, namespace: Option<String>, state: HttpState) {
    let api: Api<Ingestor> = match &namespace {
        Some(namespace) => Api::namespaced(client, namespace),
        None => Api::all(client),
    };
    loop {
        let check = match api.list(&ListParams::default().limit(1)).await {
            Ok(_) => ApiCheck::Ok,
            Err(error) => ApiCheck::Failed(format!("cannot list Ingestors: {error}")),
        };
        state.set_kubernetes(check);
        tokio::time::sleep(Duration::from_secs(15)).await;
    }
}
