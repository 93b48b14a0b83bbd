//! What `echoloop load` writes besides its summary, and `echoloop report`: the timeline has one
//! row per interval, the plot is an SVG that parses, and two simultaneous runs' HdrHistogram
//! logs add up exactly (the merged p99 is the p99 of the histograms added together).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

use crate::common;

fn echoloop(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_echoloop"))
        .args(args)
        .output()
        .expect("echoloop runs")
}

/// A scratch folder for one test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("echoloop-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn file(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_timeline_has_a_row_per_interval_of_the_reported_duration() {
    let server = common::serve(|_| {});
    let scratch = Scratch::new("timeline");
    let (csv, jsonl) = (scratch.file("t.csv"), scratch.file("t.jsonl"));
    for path in [&csv, &jsonl] {
        let output = echoloop(&[
            "load",
            "--json",
            "-c",
            "2",
            "-d",
            "1s",
            "--interval",
            "250ms",
            "--timeline",
            path,
            &server.addr().to_string(),
        ]);
        assert_eq!(output.status.code(), Some(0));
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let intervals = (json["duration_secs"].as_f64().unwrap() / 0.25).round() as usize;
        let text = std::fs::read_to_string(path).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        if path.ends_with(".csv") {
            assert_eq!(
                lines.remove(0),
                "elapsed_s,sent,received,errors,msgs_per_sec,p50_us,p99_us,max_us"
            );
        }
        assert!(
            lines.len().abs_diff(intervals) <= 1,
            "{intervals} intervals: {text}"
        );
        // The rows add up to the summary.
        let received: u64 = if path.ends_with(".csv") {
            lines
                .iter()
                .map(|l| l.split(',').nth(2).unwrap().parse::<u64>().unwrap())
                .sum()
        } else {
            lines
                .iter()
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).unwrap()["received"]
                        .as_u64()
                        .unwrap()
                })
                .sum()
        };
        assert_eq!(
            received,
            json["messages_received"].as_u64().unwrap(),
            "{text}"
        );
    }
}

#[test]
fn the_plot_is_one_valid_svg() {
    let server = common::serve(|_| {});
    let scratch = Scratch::new("plot");
    let svg = scratch.file("run.svg");
    let output = echoloop(&[
        "load",
        "-c",
        "2",
        "-d",
        "600ms",
        "--interval",
        "200ms",
        "--plot",
        &svg,
        &server.addr().to_string(),
    ]);
    assert_eq!(output.status.code(), Some(0));
    let text = std::fs::read_to_string(&svg).unwrap();
    let document = roxmltree::Document::parse(&text).expect("well-formed XML");
    let root = document.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    let captions: Vec<&str> = root
        .descendants()
        .filter(|n| n.tag_name().name() == "text")
        .filter_map(|n| n.text())
        .map(str::trim)
        .collect();
    for caption in [
        "throughput (replies/s)",
        "p99 latency (µs)",
        "latency by percentile (µs)",
    ] {
        assert!(
            captions.contains(&caption),
            "{caption} missing: {captions:?}"
        );
    }
    assert!(
        root.descendants()
            .any(|n| n.tag_name().name() == "polyline")
    );
}

/// Every interval histogram of an interval log, added up, read with the hdrhistogram crate.
fn histogram_of_log(path: &Path) -> Histogram<u64> {
    let text = std::fs::read(path).unwrap();
    let mut sum = Histogram::<u64>::new(3).unwrap();
    let mut deserializer = Deserializer::new();
    for entry in IntervalLogIterator::new(&text) {
        if let LogEntry::Interval(interval) = entry.unwrap() {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(interval.encoded_histogram())
                .unwrap();
            let h: Histogram<u64> = deserializer.deserialize(&mut bytes.as_slice()).unwrap();
            sum.add(&h).unwrap();
        }
    }
    sum
}

#[test]
fn report_adds_up_two_simultaneous_runs_exactly() {
    let server = common::serve(|_| {});
    let addr = server.addr().to_string();
    let scratch = Scratch::new("report");
    let logs = [scratch.file("a.hlog"), scratch.file("b.hlog")];
    let runs: Vec<_> = logs
        .iter()
        .map(|log| {
            Command::new(env!("CARGO_BIN_EXE_echoloop"))
                .args([
                    "load",
                    "--json",
                    "-c",
                    "2",
                    "-n",
                    "2000",
                    "--hdr-log",
                    log,
                    &addr,
                ])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut received = 0;
    for run in runs {
        let output = run.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(0));
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        received += json["messages_received"].as_u64().unwrap();
    }
    assert_eq!(received, 4000);
    let svg = scratch.file("merged.svg");
    let output = echoloop(&["report", "--json", "--plot", &svg, &logs[0], &logs[1]]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let merged: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(merged["messages_received"], 4000);
    assert_eq!(merged["messages_sent"], 4000);
    assert_eq!(merged["config"]["connections"], 4);
    let mut sum = histogram_of_log(Path::new(&logs[0]));
    sum.add(histogram_of_log(Path::new(&logs[1]))).unwrap();
    assert_eq!(sum.len(), 4000);
    let p99_us = (sum.value_at_quantile(0.99) as f64 / 100.0).round() / 10.0;
    assert_eq!(
        merged["latency_us"]["p99"].as_f64(),
        Some(p99_us),
        "{merged}"
    );
    assert!(roxmltree::Document::parse(&std::fs::read_to_string(&svg).unwrap()).is_ok());
    // A log that is not one: exit 2, one line.
    let bad = echoloop(&["report", &svg]);
    assert_eq!(bad.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&bad.stderr).lines().count(), 1);
}
