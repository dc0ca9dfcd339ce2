//! Shell completion scripts and man pages, generated from a binary's own clap command line.
//!
//! `imei-lockctl completions SHELL` and the hidden `completions SHELL` / `manpages DIR`
//! subcommands of both binaries call these; scripts/package-deb.sh and scripts/install.sh run
//! them on the release binaries, so what is shipped always matches the binary shipped with it.
//!
//! This module does not know the commands (each binary passes its own [`clap::Command`]), reads
//! no input and does no packaging: it renders text and writes files where it is told.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub use clap_complete::Shell;

/// A completion script or man page that could not be written.
#[derive(Debug, thiserror::Error)]
pub enum DocsError {
    #[error("cannot write {target}: {source}")]
    Write {
        /// The file (or "standard output").
        target: String,
        source: io::Error,
    },
    #[error("cannot render the man page {page}: {source}")]
    Render { page: String, source: io::Error },
}

/// The completion script of `cmd` for `shell`, completing the command's own name. clap_complete
/// completes hidden subcommands too (the binaries' `completions`/`manpages` generators).
pub fn completion(mut cmd: clap::Command, shell: Shell) -> Vec<u8> {
    let name = cmd.get_name().to_owned();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    out
}

/// Writes the completion script of `cmd` for `shell` to `out` (standard output, usually).
///
/// # Errors
/// [`DocsError::Write`] when `out` refuses the bytes (a closed pipe).
pub fn write_completion(
    cmd: clap::Command,
    shell: Shell,
    out: &mut dyn Write,
) -> Result<(), DocsError> {
    let script = completion(cmd, shell);
    out.write_all(&script)
        .and_then(|()| out.flush())
        .map_err(|source| DocsError::Write {
            target: "standard output".into(),
            source,
        })
}

/// Writes one man page per command into `dir` (created if missing): `NAME.SECTION` for `cmd`,
/// then `NAME-SUB.SECTION` for each visible subcommand, recursively (`imei-lockctl-sim-get.1`).
/// Hidden subcommands and clap's `help` get none. Returns the files written, in that order.
///
/// # Errors
/// [`DocsError`] naming the page or file that failed.
pub fn write_man_pages(
    mut cmd: clap::Command,
    section: &str,
    dir: &Path,
) -> Result<Vec<PathBuf>, DocsError> {
    std::fs::create_dir_all(dir).map_err(|source| DocsError::Write {
        target: dir.display().to_string(),
        source,
    })?;
    // Fills in every subcommand's display name ("imei-lockctl-sim") and usage line.
    cmd.build();
    let mut written = Vec::new();
    write_page(&cmd, section, dir, &mut written)?;
    Ok(written)
}

fn write_page(
    cmd: &clap::Command,
    section: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<(), DocsError> {
    let name = cmd
        .get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_owned();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .title(name.to_uppercase())
        .section(section)
        .render(&mut page)
        .map_err(|source| DocsError::Render {
            page: name.clone(),
            source,
        })?;
    let path = dir.join(format!("{name}.{section}"));
    std::fs::write(&path, page).map_err(|source| DocsError::Write {
        target: path.display().to_string(),
        source,
    })?;
    written.push(path);
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        write_page(sub, section, dir, written)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> clap::Command {
        clap::Command::new("tool")
            .about("A tool.")
            .arg(
                clap::Arg::new("verbose")
                    .long("verbose")
                    .action(clap::ArgAction::SetTrue),
            )
            .subcommand(
                clap::Command::new("sim")
                    .about("SIMs.")
                    .subcommand(clap::Command::new("get").about("Show a SIM.")),
            )
            .subcommand(clap::Command::new("secret").hide(true))
    }

    #[test]
    fn completions_name_the_command_and_its_subcommands() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let text = String::from_utf8(completion(sample(), shell)).unwrap_or_default();
            assert!(text.contains("tool"), "{shell}: {text}");
            assert!(text.contains("sim"), "{shell}: {text}");
            // bash and zsh spell the option `--verbose`; fish `-l verbose`.
            let option = if shell == Shell::Fish {
                "-l verbose"
            } else {
                "--verbose"
            };
            assert!(text.contains(option), "{shell}: {text}");
        }
    }

    #[test]
    fn man_pages_one_per_visible_command() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_man_pages(sample(), "8", dir.path()).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["tool.8", "tool-sim.8", "tool-sim-get.8"]);
        let top = std::fs::read_to_string(&written[0]).unwrap();
        assert!(top.contains(".TH TOOL 8"), "{top}");
        assert!(top.contains("verbose"), "{top}");
        let get = std::fs::read_to_string(&written[2]).unwrap();
        assert!(get.contains("Show a SIM"), "{get}");
    }

    #[test]
    fn a_closed_output_is_an_error_not_a_panic() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let e = write_completion(sample(), Shell::Bash, &mut Closed).unwrap_err();
        assert!(e.to_string().contains("standard output"), "{e}");
    }
}
