//! `echoloop`: command line → subcommand → exit code.
//!
//! The same exit codes for every command (`cli/exit.rs` sorts the failures):
//!
//! - 0: done (`serve`: also after SIGINT or SIGTERM, once it has drained).
//! - 1: a runtime failure: an address in use, a server that cannot be reached or answers
//!   `error:`, a full disk, a `load` run that found timeouts, wrong replies or failed connections.
//! - 2: bad input on the command line: one line on stderr naming the argument or the value
//!   (`cli/usage_error.rs`), or a file it names that cannot be opened, created or parsed.
//! - 130: stopped by SIGINT (`load` prints its report first).
//!
//! Whatever the failure, stderr gets one line starting with `echoloop: `; the usage stays with
//! `--help`.

use std::io::Write;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use echoloop::Server;
use echoloop::cli::exit::{CliError, exit_130_on_sigint};
use echoloop::cli::{Cli, ClientArgs, Command, GetArgs, PutArgs, ServeArgs, usage_error};
use echoloop::clients::interactive::{self, Ending};
use echoloop::clients::transfer;
use echoloop::net::activation;
use signal_hook::consts::SIGINT;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let line = usage_error::one_line(&e, &Cli::command());
            return exit_with(Err(CliError::Usage(line)));
        }
    };
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if matches!(&cli.command, Command::Serve(args) if args.trace) {
        logger.filter_module("echoloop", log::LevelFilter::Trace);
    }
    logger.init();
    exit_with(match cli.command {
        Command::Serve(args) => serve(args),
        Command::Load(args) => load(args),
        Command::Report(args) => report(args),
        Command::Client(args) => client(args),
        Command::Put(args) => put(args),
        Command::Get(args) => get(args),
    })
}

/// The exit code for a command's outcome, after the one line that says why it failed.
fn exit_with(outcome: Result<(), CliError>) -> ExitCode {
    let Err(error) = outcome else {
        return ExitCode::SUCCESS;
    };
    if let Some(line) = error.message() {
        eprintln!("echoloop: {line}");
    }
    ExitCode::from(error.exit_code())
}

fn serve(args: ServeArgs) -> Result<(), CliError> {
    // Sockets from systemd (socket activation) are served with any `-l`/`-u`; with some and no
    // `-l`, the default 127.0.0.1:7007 is not bound. Bad LISTEN_* variables come from the
    // environment, not the command line: exit 1.
    // Each is served with the service its name (`FileDescriptorName=`) selects, else `-p`.
    let inherited = activation::inherited_sockets()
        .map(echoloop::cli::inherited_services)
        .map_err(|e| CliError::Runtime(e.to_string()))?;
    let explicit_listen = !args.listen.is_empty();
    let model = args.model;
    let mut config = args.into_config();
    if model == echoloop::server::threaded::Model::Threaded {
        return serve_threaded(&config);
    }
    if !inherited.is_empty() && !explicit_listen {
        config.listen.clear();
    }
    let server = Server::bind_with(&config, inherited)?;
    let mut stdout = std::io::stdout().lock();
    for socket in server.listening() {
        let _ = writeln!(stdout, "listening {socket}");
    }
    let _ = stdout.flush();
    drop(stdout);
    activation::notify_ready(); // every socket is bound: systemd's Type=notify may go on
    server
        .run()
        .map_err(|e| CliError::Runtime(format!("server failed: {e}")))
}

/// `serve --model threaded`: the same start and exit codes, one thread per connection.
fn serve_threaded(config: &echoloop::ServeConfig) -> Result<(), CliError> {
    let server = echoloop::server::threaded::ThreadedServer::bind(config)?;
    for socket in server.listening() {
        println!("listening {socket}");
    }
    server
        .run()
        .map_err(|e| CliError::Runtime(format!("server failed: {e}")))
}

fn load(args: echoloop::cli::LoadArgs) -> Result<(), CliError> {
    use echoloop::clients::load::{self, Control, Outputs};
    let json = args.results.json;
    let paths = args.output_paths();
    let config = args.into_config().map_err(CliError::Usage)?;
    // Every output file exists before the first connection: a bad path costs no run.
    let mut outputs = Outputs::create(&paths).map_err(CliError::Usage)?;
    // The first SIGINT ends the run early, with its report; a second one exits at once.
    let control = Control::default();
    for register in [
        |stop| signal_hook::flag::register_conditional_shutdown(SIGINT, 130, stop),
        |stop| signal_hook::flag::register(SIGINT, stop),
    ] {
        register(std::sync::Arc::clone(&control.stop))
            .map_err(|e| CliError::Runtime(format!("cannot handle SIGINT: {e}")))?;
    }
    let mut write_error = None;
    let report = load::run_with(&config, &control, |interval, row| {
        if let Err(e) = outputs.write_interval(interval, row) {
            write_error.get_or_insert(e);
        }
    })?;
    finish_report(&report, outputs, json, write_error)?;
    if report.exit_code() == 130 {
        return Err(CliError::Interrupted(Some(format!(
            "interrupted: the report covers {:.3} s",
            report.duration_secs
        ))));
    }
    failed(&report)
}

/// Prints a report (summary or JSON) and writes its files (a file that cannot be written now,
/// after the run, is a runtime failure: a full disk).
fn finish_report(
    report: &echoloop::clients::load::LoadReport,
    outputs: echoloop::clients::load::Outputs,
    json: bool,
    write_error: Option<String>,
) -> Result<(), CliError> {
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    let _ = std::io::stdout().flush();
    match write_error.or_else(|| outputs.finish(report).err()) {
        Some(e) => Err(CliError::Runtime(e)),
        None => Ok(()),
    }
}

/// A run (or the runs added up) that found timeouts, wrong replies or failed connections: exit 1.
fn failed(report: &echoloop::clients::load::LoadReport) -> Result<(), CliError> {
    match &report.failure {
        Some(why) => Err(CliError::Runtime(format!("failed: {why}"))),
        None => Ok(()),
    }
}

fn report(args: echoloop::cli::ReportArgs) -> Result<(), CliError> {
    use echoloop::clients::load::{Outputs, merge_logs};
    exit_130_on_sigint("interrupted")?;
    let mut outputs = Outputs::create(&args.output_paths()).map_err(CliError::Usage)?;
    let report = merge_logs(&args.logs)?;
    let mut write_error = None;
    for row in &report.timeline {
        if let Err(e) = outputs.write_row(row) {
            write_error.get_or_insert(e);
        }
    }
    finish_report(&report, outputs, args.results.json, write_error)?;
    // Runs stopped by SIGINT are added up like the others (and the report says so); `report`
    // itself was not interrupted, so it exits 0 or 1.
    failed(&report)
}

/// `client`: Ctrl-C ends its loop cleanly (stdin's flags restored), then exit 130.
fn client(args: ClientArgs) -> Result<(), CliError> {
    match interactive::run(&args.into_config())? {
        Ending::Done => Ok(()),
        Ending::Interrupted => Err(CliError::Interrupted(None)),
    }
}

fn put(args: PutArgs) -> Result<(), CliError> {
    exit_130_on_sigint("interrupted: run the same command again to resume")?;
    Ok(transfer::put(&args.into_config())?)
}

fn get(args: GetArgs) -> Result<(), CliError> {
    exit_130_on_sigint("interrupted: run the same command again to resume")?;
    Ok(transfer::get(&args.into_config())?)
}
