//! The `orchestrator` command: parses arguments, loads the configuration, wires the library
//! crates together and runs. Everything of substance lives in the crates.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gateway_core::Role;
use gateway_http::Config;
use settings::SettingsStore;

mod readiness;
mod reload_cmd;
mod service_install;

/// Central coordinator of the MT5 trading platform: REST gateway, process supervisor,
/// real-time hub and settings store in one process.
#[derive(Parser, Debug)]
#[command(name = "orchestrator", version, about, long_about = None)]
struct Cli {
    /// Configuration file (default: ./orchestrator.toml if present, else the built-in platform).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen address, overriding the configuration (e.g. 127.0.0.1:5000).
    #[arg(long, global = true, value_name = "ADDR")]
    bind: Option<String>,
    /// Data directory (setup.db, logs/, run/), overriding the configuration.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the orchestrator (the default).
    Run,
    /// Run one simulated service.
    Sim(simulator::SimArgs),
    /// Validate or show the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Apply the changed configuration file to the running orchestrator, without a restart
    /// (uses the token in the data directory's admin.token).
    Reload,
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Start the orchestrator with the machine (systemd unit; Windows service or logon task).
    #[command(subcommand)]
    Service(service_install::ServiceCommand),
    /// How a registered Windows service or logon task starts the orchestrator.
    #[command(hide = true)]
    ServiceRun(service_install::ServiceRunArgs),
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Check a configuration file; exit status 0 when valid.
    Check {
        /// The file to check.
        file: PathBuf,
    },
    /// Print the effective configuration (file or built-in, with environment overrides).
    Print,
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Create a token and print it (alone, once) on stdout.
    Create {
        /// A unique name for the token.
        name: String,
        /// What the token may do.
        #[arg(long, value_parser = ["viewer", "operator", "service"])]
        role: String,
    },
    /// List tokens (names and roles; never the tokens themselves).
    List,
    /// Revoke a token at once.
    Revoke {
        /// The token's name.
        name: String,
    },
}

fn main() -> ExitCode {
    // A keeper the supervisor re-executed (Unix), or its stop-signal helper (Windows), runs here
    // and never returns.
    supervisor::keeper_entry();
    let cli = Cli::parse();
    if let Some(Command::Sim(args)) = cli.command {
        return match simulator::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("simulator: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let mut logger = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    logger.format_timestamp_millis();
    // A Windows service has no console: its log goes to a file in the data directory.
    if let Some(Command::ServiceRun(args)) = &cli.command
        && let Some(file) = service_install::service_log(args, cli.data_dir.as_deref())
    {
        logger.target(env_logger::Target::Pipe(Box::new(file)));
    }
    logger.init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            log::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None | Some(Command::Run) => {
            let config = effective_config(&cli.config, &cli.bind, &cli.data_dir)?;
            serve(config, config_source(&cli.config, &cli.bind, &cli.data_dir), service_install::RunHooks::none())?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::ServiceRun(args)) => {
            // Relative paths in the configuration mean what they meant at install time.
            std::env::set_current_dir(&args.workdir).with_context(|| format!("entering {}", args.workdir.display()))?;
            let config = effective_config(&cli.config, &cli.bind, &cli.data_dir)?;
            let budget = config.clone();
            let source = config_source(&cli.config, &cli.bind, &cli.data_dir);
            service_install::run(&args, &budget, Box::new(move |hooks| serve(config, source, hooks)))?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Service(service_install::ServiceCommand::Install { name, user, at_logon, print })) => {
            let config = effective_config(&cli.config, &cli.bind, &cli.data_dir)?;
            let launch =
                service_install::Launch::resolve(cli.config.as_deref(), cli.bind.as_deref(), &config.gateway.data_dir)?;
            service_install::install(&name, user.as_deref(), at_logon, print, &launch, &config)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Service(service_install::ServiceCommand::Uninstall { name, at_logon })) => {
            service_install::uninstall(&name, at_logon)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Sim(_)) => Ok(ExitCode::SUCCESS),
        Some(Command::Config(ConfigCommand::Check { file })) => match Config::load_with_env(&file, std::env::vars()) {
            Ok(config) => {
                println!("{}: valid ({} services)", file.display(), config.services.len());
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                println!("{}: {e}", file.display());
                Ok(ExitCode::from(2))
            }
        },
        Some(Command::Config(ConfigCommand::Print)) => {
            let config = effective_config(&cli.config, &cli.bind, &cli.data_dir)?;
            print!("{}", config.to_toml());
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Reload) => {
            let config = effective_config(&cli.config, &cli.bind, &cli.data_dir)?;
            reload_cmd::run(&config)
        }
        Some(Command::Token(cmd)) => {
            let config = effective_config(&cli.config, &cli.bind, &cli.data_dir)?;
            let dir = &config.gateway.data_dir;
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let store = SettingsStore::open(&dir.join("setup.db")).context("opening the settings store")?;
            match cmd {
                TokenCommand::Create { name, role } => {
                    let role = Role::parse(&role).context("unknown role")?;
                    let token = store.create_token(&name, role).with_context(|| format!("creating token {name}"))?;
                    println!("{token}");
                }
                TokenCommand::List => {
                    for t in store.list_tokens()? {
                        println!(
                            "{}\t{}\tcreated {}\tlast used {}",
                            t.name,
                            t.role,
                            t.created_at,
                            t.last_used_at.as_deref().unwrap_or("never")
                        );
                    }
                }
                TokenCommand::Revoke { name } => {
                    store.revoke_token(&name).with_context(|| format!("revoking token {name}"))?;
                    println!("revoked {name}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The configuration in force: `--config`, else `./orchestrator.toml`, else the built-in
/// platform; then `ORCHESTRATOR_*` environment overrides; then command-line flags.
fn effective_config(
    file: &Option<PathBuf>,
    bind: &Option<String>,
    data_dir: &Option<PathBuf>,
) -> anyhow::Result<Config> {
    let local = Path::new("orchestrator.toml");
    let env = std::env::vars;
    let mut config = match file {
        Some(path) => {
            Config::load_with_env(path, env()).with_context(|| format!("configuration {}", path.display()))?
        }
        None if local.exists() => Config::load_with_env(local, env()).context("configuration ./orchestrator.toml")?,
        None => {
            let exe = std::env::current_exe().context("locating the orchestrator executable")?;
            let mut config = Config::builtin(&exe);
            config.apply_env(env()).context("environment overrides")?;
            config
        }
    };
    if let Some(bind) = bind {
        config.gateway.bind = bind.clone();
        config.gateway.bind_addr().context("--bind")?;
    }
    if let Some(dir) = data_dir {
        config.gateway.data_dir = dir.clone();
    }
    Ok(config)
}

/// Where a reload reads the configuration: the same file (or built-in platform), flags and
/// environment as this start.
fn config_source(
    file: &Option<PathBuf>,
    bind: &Option<String>,
    data_dir: &Option<PathBuf>,
) -> gateway_http::ConfigSource {
    let (file, bind, data_dir) = (file.clone(), bind.clone(), data_dir.clone());
    std::sync::Arc::new(move || {
        effective_config(&file, &bind, &data_dir).map_err(|e| gateway_http::ConfigError::Invalid {
            field: "config".into(),
            line: None,
            message: format!("{e:#}"),
        })
    })
}

fn serve(config: Config, source: gateway_http::ConfigSource, hooks: service_install::RunHooks) -> anyhow::Result<()> {
    let data_dir = config.gateway.data_dir.clone();
    let system = actix_rt::System::new();
    system.block_on(async move {
        let app = gateway_http::Application::build_reloadable(config, Some(source))
            .await
            .context("starting the orchestrator")?;
        readiness::report(app.state().registry.clone());
        (hooks.on_listening)();
        // The token is logged once, at the start that creates it; later starts say where it is.
        let url = format!("http://127.0.0.1:{}/", app.port());
        let token_file = data_dir.join("admin.token");
        match app.admin_token() {
            Some(t) => {
                log::info!("dashboard: {url}#token={t}");
                log::info!("created the admin token in {} (logged this once only)", token_file.display());
            }
            None if token_file.exists() => {
                log::info!("dashboard: {url} (open it with #token=<the contents of {}>)", token_file.display())
            }
            None => log::info!(
                "dashboard: {url} ({} was removed; create a token with `orchestrator token create`)",
                token_file.display()
            ),
        }
        app.run_until(hooks.stop).await.context("serving")
    })
}
