//! Finding the shell examples in a Markdown file, and cutting a `console` block into steps.
//!
//! A block is a fenced code block (```` ``` ````, possibly indented inside a list). It is a *shell
//! example* when its info string's first word is `console`, `sh`, `bash` or `shell`, or when it
//! has no info string and a line of it starts with `$ `. Other blocks (`rust`, `python`, `text`,
//! diagrams, log excerpts) are not shell examples and are left alone.
//!
//! A shell example is either run, which needs the `console` info string, or marked illustrative by
//! the line right before its fence: `<!-- illustrative: REASON -->`.
//!
//! A *program* is a ```` ```python ```` block followed at once by a ```` ```text ```` block: the
//! program and what it prints. It is run too (with `python3`), unless marked the same way.
//!
//! Inside a `console` block a line starting with `$ ` is a command; a command continues on the
//! next lines while a quote is open or the line ends in `\` (as a shell reads it, so
//! `python3 -c "` followed by the program reads and copies as one command). Every other line,
//! up to the next command, is the output the command shows.

/// The sections of a document: its text cut at each heading, each with the shell examples in it.
pub struct Section {
    /// The heading's line (1-based), or 1 for the text before the first heading.
    pub line: usize,
    pub blocks: Vec<Block>,
}

/// One shell example.
pub struct Block {
    /// The line of the opening fence (1-based).
    pub line: usize,
    /// The info string's first word (`console`, `sh`, ...), empty for none.
    pub language: String,
    /// `Some(reason)` when the line before the fence marks it illustrative.
    pub illustrative: Option<String>,
    /// The lines between the fences, without the fence's indentation.
    pub body: Vec<String>,
    /// A program's output: the lines of the ```` ```text ```` block right after it.
    pub output: Option<Vec<String>>,
}

impl Block {
    /// The line of the block's first body line.
    pub fn first_body_line(&self) -> usize {
        self.line + 1
    }
}

/// A command of a `console` block, and the output shown under it.
#[derive(Debug, PartialEq)]
pub struct Step {
    /// The line of its `$ ` (1-based, in the document).
    pub line: usize,
    /// The command as the shell reads it: continuation lines joined with `\n`, no `$ `.
    pub command: String,
    /// The shown output: its lines, each ending in `\n`.
    pub expected: String,
    /// Run as written (a program's heredoc): no `#` comment, no `&`.
    pub literal: bool,
}

const SHELL_LANGUAGES: [&str; 4] = ["console", "sh", "bash", "shell"];

/// What marks a block illustrative, before its reason.
const MARKER: &str = "<!-- illustrative:";

/// The shell examples of `text`, by section.
pub fn sections(text: &str) -> Vec<Section> {
    let lines: Vec<&str> = text.lines().collect();
    let mut sections = vec![Section {
        line: 1,
        blocks: Vec::new(),
    }];
    let mut index = 0;
    // The lines of the fenced block that opens at `start`, and the line after its closing fence.
    let fenced = |start: usize, indent: usize| {
        let mut body = Vec::new();
        let mut index = start + 1;
        while index < lines.len() && lines[index].trim() != "```" {
            let body_line = lines[index];
            let cut = body_line.len() - body_line.trim_start().len();
            body.push(body_line[cut.min(indent)..].to_string());
            index += 1;
        }
        (body, index + 1)
    };
    while index < lines.len() {
        let line = lines[index];
        let trimmed = line.trim_start();
        if line.starts_with('#') {
            sections.push(Section {
                line: index + 1,
                blocks: Vec::new(),
            });
        } else if let Some(info) = trimmed.strip_prefix("```") {
            let indent = line.len() - trimmed.len();
            let opening = index;
            let (body, after) = fenced(index, indent);
            index = after - 1;
            let language = info
                .split(|c: char| c == ',' || c.is_whitespace())
                .next()
                .unwrap_or("")
                .to_string();
            let is_shell = SHELL_LANGUAGES.contains(&language.as_str())
                || (language.is_empty() && body.iter().any(|l| l.starts_with("$ ")));
            let mut output = None;
            if language == "python" && lines.get(after).is_some_and(|l| l.trim() == "```text") {
                let (text, after_text) = fenced(after, indent);
                output = Some(text);
                index = after_text - 1;
            }
            if is_shell || output.is_some() {
                let before = if opening > 0 { lines[opening - 1] } else { "" };
                sections.last_mut().unwrap().blocks.push(Block {
                    line: opening + 1,
                    language,
                    illustrative: illustrative_reason(before),
                    body,
                    output,
                });
            }
        }
        index += 1;
    }
    sections.retain(|section| !section.blocks.is_empty());
    sections
}

/// The reason of an `<!-- illustrative: REASON -->` line; `Some("")` when it gives none.
fn illustrative_reason(line: &str) -> Option<String> {
    let rest = line.trim().strip_prefix(MARKER)?.strip_suffix("-->")?;
    Some(rest.trim().to_string())
}

/// The commands of a `console` block with the output each shows; for a program, one step that
/// runs it with `python3` and expects its ```` ```text ````.
pub fn steps(block: &Block) -> Vec<Step> {
    if let Some(output) = &block.output {
        return vec![Step {
            line: block.line,
            command: format!("python3 - <<'PYTHON'\n{}\nPYTHON", block.body.join("\n")),
            expected: output.iter().map(|line| format!("{line}\n")).collect(),
            literal: true,
        }];
    }
    let mut steps: Vec<Step> = Vec::new();
    let mut continuing = false;
    for (offset, line) in block.body.iter().enumerate() {
        if continuing {
            let step = steps.last_mut().unwrap();
            step.command.push('\n');
            step.command.push_str(line);
            continuing = is_unfinished(&step.command);
        } else if let Some(command) = line.strip_prefix("$ ").or((line == "$").then_some("")) {
            steps.push(Step {
                line: block.first_body_line() + offset,
                command: command.to_string(),
                expected: String::new(),
                literal: false,
            });
            continuing = is_unfinished(command);
        } else if let Some(step) = steps.last_mut() {
            step.expected.push_str(line);
            step.expected.push('\n');
        }
    }
    steps
}

/// What the shell would see of `command`: whether it is still open (a quote not closed, or a
/// final `\`), and where a `#` comment starts (its byte offset, or the length).
pub fn scan(command: &str) -> (bool, usize) {
    let mut quote = None;
    let mut escaped = false;
    let mut previous = ' ';
    for (at, c) in command.char_indices() {
        if escaped {
            escaped = false;
        } else if quote == Some('\'') {
            if c == '\'' {
                quote = None;
            }
        } else if c == '\\' {
            escaped = true;
        } else if quote == Some('"') {
            if c == '"' {
                quote = None;
            }
        } else if c == '"' || c == '\'' {
            quote = Some(c);
        } else if c == '#' && previous.is_whitespace() {
            return (false, at);
        }
        previous = c;
    }
    (quote.is_some() || escaped, command.len())
}

fn is_unfinished(command: &str) -> bool {
    scan(command).0
}

/// The command without its comment, and whether it ends in `&` (runs in the background).
pub fn background(command: &str) -> (&str, bool) {
    let code = command[..scan(command).1].trim_end();
    match code.strip_suffix('&') {
        Some(rest) if !rest.ends_with('&') => (rest.trim_end(), true),
        _ => (code, false),
    }
}

#[test]
fn blocks_sections_markers_and_steps_are_found() {
    let text = "# A\n\n```sh\ncargo build\n```\n## B\n<!-- illustrative: needs systemd -->\n\
                ```console\n$ systemctl start x\n```\n\n```\n$ echo hi\nhi\n```\n\
                ```rust\nlet x = 1;\n```\n```\ndiagram\n```\n  ```console\n  $ python3 -c \"\n  print(1)\"\n  1\n  $ true\n  ```\n";
    let sections = sections(text);
    assert_eq!(sections.iter().map(|s| s.line).collect::<Vec<_>>(), [1, 6]);
    let [first, second] = &sections[..] else {
        panic!()
    };
    assert_eq!(first.blocks[0].language, "sh");
    assert_eq!(first.blocks[0].illustrative, None);
    let kinds: Vec<_> = second
        .blocks
        .iter()
        .map(|b| (b.line, b.language.as_str(), b.illustrative.as_deref()))
        .collect();
    assert_eq!(
        kinds,
        [
            (8, "console", Some("needs systemd")),
            (12, "", None),
            (22, "console", None)
        ]
    );
    assert_eq!(
        steps(&second.blocks[2]),
        [
            Step {
                line: 23,
                command: "python3 -c \"\nprint(1)\"".into(),
                expected: "1\n".into(),
                literal: false,
            },
            Step {
                line: 26,
                command: "true".into(),
                expected: String::new(),
                literal: false,
            }
        ]
    );
}

#[test]
fn the_shell_scan_sees_quotes_comments_and_background() {
    assert_eq!(scan("printf 'a # b' # c"), (false, 15));
    assert_eq!(scan("echo \"it's\""), (false, 11));
    assert!(scan("python3 -c \"").0 && scan("a \\").0 && !scan("echo a#b").0);
    assert_eq!(background("kill %1    # drain"), ("kill %1", false));
    assert_eq!(background("serve -l x:0 &  # bg"), ("serve -l x:0", true));
    assert_eq!(background("true && false"), ("true && false", false));
    assert_eq!(
        illustrative_reason("<!-- illustrative: takes minutes -->").as_deref(),
        Some("takes minutes")
    );
    assert_eq!(illustrative_reason("<!-- not that -->"), None);
}
