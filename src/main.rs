//! `echoloop`: command line → subcommand → exit code.
//!
//! Exit codes: 0 done, 1 could not start (address in use, permission denied) or failed while
//! running (`load`/`report`: the run found timeouts, wrong replies or failed connections), 2 bad
//! command-line input (one line on stderr naming the argument, or an output file that cannot be
//! created), 130 `load` stopped by SIGINT (its report is printed all the same).

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use echoloop::cli::{Cli, Command, ServeArgs};
use echoloop::net::activation;
use echoloop::{Server, StartError};
use signal_hook::consts::SIGINT;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return ExitCode::from(2);
        }
        Err(e) => return usage_error(&e.render().to_string()),
    };
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if matches!(&cli.command, Command::Serve(args) if args.trace) {
        logger.filter_module("echoloop", log::LevelFilter::Trace);
    }
    logger.init();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Load(args) => load(args),
        Command::Report(args) => report(args),
        Command::Client(args) => echoloop::clients::interactive::run(&args.into_config()),
        Command::Put(args) => echoloop::clients::transfer::put(&args.into_config()),
        Command::Get(args) => echoloop::clients::transfer::get(&args.into_config()),
    }
}

/// Bad input: the first line of the message (clap's names the argument), exit 2.
fn usage_error(message: &str) -> ExitCode {
    let line = message.lines().next().unwrap_or("error: bad arguments");
    eprintln!("echoloop: {}", line.trim_start_matches("error: "));
    ExitCode::from(2)
}

fn serve(args: ServeArgs) -> ExitCode {
    // Sockets from systemd (socket activation) are served with any `-l`/`-u`; with some and no
    // `-l`, the default 127.0.0.1:7007 is not bound.
    // Each is served with the service its name (`FileDescriptorName=`) selects, else `-p`.
    let inherited = match activation::inherited_sockets() {
        Ok(sockets) => echoloop::cli::inherited_services(sockets),
        Err(e) => {
            eprintln!("echoloop: {e}");
            return ExitCode::FAILURE;
        }
    };
    let explicit_listen = !args.listen.is_empty();
    let model = args.model;
    let mut config = args.into_config();
    if model == echoloop::server::threaded::Model::Threaded {
        return serve_threaded(&config);
    }
    if !inherited.is_empty() && !explicit_listen {
        config.listen.clear();
    }
    let server = match Server::bind_with(&config, inherited) {
        Ok(server) => server,
        Err(e @ StartError::Config(_)) => return usage_error(&e.to_string()),
        Err(e) => {
            eprintln!("echoloop: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    for socket in server.listening() {
        let _ = writeln!(stdout, "listening {socket}");
    }
    let _ = stdout.flush();
    drop(stdout);
    activation::notify_ready(); // every socket is bound: systemd's Type=notify may go on
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("server failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `serve --model threaded`: the same start and exit codes, one thread per connection.
fn serve_threaded(config: &echoloop::ServeConfig) -> ExitCode {
    let server = match echoloop::server::threaded::ThreadedServer::bind(config) {
        Ok(server) => server,
        Err(e @ StartError::Config(_)) => return usage_error(&e.to_string()),
        Err(e) => {
            eprintln!("echoloop: {e}");
            return ExitCode::FAILURE;
        }
    };
    for socket in server.listening() {
        println!("listening {socket}");
    }
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("server failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load(args: echoloop::cli::LoadArgs) -> ExitCode {
    use echoloop::clients::load::{self, Control, LoadError, Outputs};
    let json = args.results.json;
    let paths = args.output_paths();
    let config = match args.into_config() {
        Ok(config) => config,
        Err(message) => return usage_error(&message),
    };
    // Every output file exists before the first connection: a bad path costs no run.
    let mut outputs = match Outputs::create(&paths) {
        Ok(outputs) => outputs,
        Err(message) => return usage_error(&message),
    };
    // The first SIGINT ends the run early, with its report; a second one exits at once.
    let control = Control::default();
    for register in [
        |stop| signal_hook::flag::register_conditional_shutdown(SIGINT, 130, stop),
        |stop| signal_hook::flag::register(SIGINT, stop),
    ] {
        if let Err(e) = register(std::sync::Arc::clone(&control.stop)) {
            eprintln!("echoloop: cannot handle SIGINT: {e}");
            return ExitCode::FAILURE;
        }
    }
    let mut write_error = None;
    let result = load::run_with(&config, &control, |interval, row| {
        if let Err(e) = outputs.write_interval(interval, row) {
            write_error.get_or_insert(e);
        }
    });
    let report = match result {
        Ok(report) => report,
        Err(e @ LoadError::Limits(_)) => return usage_error(&e.to_string()),
        Err(e) => {
            eprintln!("echoloop: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = report.exit_code();
    finish_report(&report, outputs, json, write_error, code)
}

/// Prints a report (summary or JSON), writes its files, says why it failed; exits with `code`
/// (1 if a file could not be written).
fn finish_report(
    report: &echoloop::clients::load::LoadReport,
    outputs: echoloop::clients::load::Outputs,
    json: bool,
    write_error: Option<String>,
    code: u8,
) -> ExitCode {
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    let _ = std::io::stdout().flush();
    if let Some(e) = write_error.or_else(|| outputs.finish(report).err()) {
        eprintln!("echoloop: {e}");
        return ExitCode::FAILURE;
    }
    if code == 130 {
        eprintln!(
            "echoloop: interrupted: the report covers {:.3} s",
            report.duration_secs
        );
    } else if let Some(why) = &report.failure {
        eprintln!("echoloop: failed: {why}");
    }
    ExitCode::from(code)
}

fn report(args: echoloop::cli::ReportArgs) -> ExitCode {
    use echoloop::clients::load::{Outputs, merge_logs};
    let mut outputs = match Outputs::create(&args.output_paths()) {
        Ok(outputs) => outputs,
        Err(message) => return usage_error(&message),
    };
    let report = match merge_logs(&args.logs) {
        Ok(report) => report,
        Err(e) => return usage_error(&e.to_string()),
    };
    let mut write_error = None;
    for row in &report.timeline {
        if let Err(e) = outputs.write_row(row) {
            write_error.get_or_insert(e);
        }
    }
    // Runs stopped by SIGINT are added up like the others (and the report says so); `report`
    // itself was not interrupted, so it exits 0 or 1.
    let code = u8::from(report.failure.is_some());
    finish_report(&report, outputs, args.results.json, write_error, code)
}
