//! Image commands on other hosts (`--remote-host HOST`, repeatable) and `build-import`.
//!
//! For each host, in turn: `id -u` over ssh (`sudo` when not root), a fresh temp directory
//! (`mktemp -d`), the files the command needs shipped into it with `tar` (dereferenced: `./result`
//! points into the Nix store) together with this very binary unless `PIKA_GUEST_REMOTE` names an
//! installed one, then `pika-guest image SUB ... --host HOST` run there; the temp directory is
//! removed on every path. A failing host does not stop or undo the others. With more than one host
//! a closing table says which host serves what. `build-import` streams the git working tree
//! (tracked and untracked, not ignored) into the temp directory and runs `nix build` there first;
//! without `--remote-host` it does the same on this machine.
//!
//! Every word that reaches a remote shell is single-quoted (ssh joins its arguments into one
//! string that the remote login shell parses again), so no value runs as code.
//!
//! Environment: `PIKA_IMAGE_SSH` (ssh executable, default `ssh`), `PIKA_BUILD_SSH_KEY` (identity,
//! `-i`), `PIKA_IMAGE_REMOTE_TMPDIR` (parent of the remote temp directories, default `/tmp`),
//! `PIKA_GUEST_REMOTE` (pika-guest on the remote hosts), `PIKA_IMAGE_NIX` (nix executable on the
//! building host, default `nix`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use pika_runtime::TextTable;

/// `[user@]host`, never an ssh option.
pub fn parse_host(value: &str) -> Result<String, String> {
    let mut chars = value.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c)) {
        Ok(value.to_string())
    } else {
        Err(format!(
            "invalid --remote-host '{value}': [user@]host of letters, digits, '.', '_', '-'"
        ))
    }
}

/// One word for a POSIX shell: as it is when it is plainly safe, else single-quoted.
pub fn sh_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./:=@%+,-".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Where a job's commands run: this machine, or one host through ssh.
enum Runner {
    Local,
    Ssh {
        host: String,
        ssh: String,
        opts: Vec<String>,
    },
}

impl Runner {
    fn ssh(host: &str) -> Self {
        let mut opts = Vec::new();
        if let Some(key) = std::env::var_os("PIKA_BUILD_SSH_KEY").filter(|k| !k.is_empty()) {
            opts.push("-i".to_string());
            opts.push(key.to_string_lossy().into_owned());
        }
        opts.push("-o".into());
        opts.push("StrictHostKeyChecking=accept-new".into());
        Runner::Ssh {
            host: host.to_string(),
            ssh: env_or("PIKA_IMAGE_SSH", "ssh"),
            opts,
        }
    }

    fn name(&self) -> &str {
        match self {
            Runner::Local => "local",
            Runner::Ssh { host, .. } => host,
        }
    }

    fn command(&self, words: &[String]) -> Command {
        match self {
            Runner::Local => {
                let mut command = Command::new(&words[0]);
                command.args(&words[1..]);
                command
            }
            Runner::Ssh { host, ssh, opts } => {
                let line: Vec<String> = words.iter().map(|w| sh_quote(w)).collect();
                let mut command = Command::new(ssh);
                command.args(opts).arg(host).arg(line.join(" "));
                command
            }
        }
    }

    /// Runs `words` with no stdin; returns the exit code and stdout (stderr passes through).
    fn output(&self, words: &[String]) -> Result<(i32, String), String> {
        let output = self
            .command(words)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("{}: cannot run {}: {e}", self.name(), words[0]))?;
        Ok((
            output.status.code().unwrap_or(1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        ))
    }

    fn capture(&self, words: &[String]) -> Result<String, String> {
        match self.output(words)? {
            (0, out) => Ok(out),
            (code, _) => Err(format!(
                "`{}` failed on {} (exit {code})",
                words.join(" "),
                self.name()
            )),
        }
    }

    /// `producer | words` with `words` on this runner.
    fn pipe(&self, mut producer: Command, input: &[u8], words: &[String]) -> Result<(), String> {
        let mut producer = producer
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run tar: {e}"))?;
        let stdout = producer.stdout.take().expect("piped stdout");
        let mut consumer = self
            .command(words)
            .stdin(Stdio::from(stdout))
            .spawn()
            .map_err(|e| format!("{}: cannot run {}: {e}", self.name(), words[0]))?;
        let mut stdin = producer.stdin.take().expect("piped stdin");
        let written = stdin.write_all(input);
        drop(stdin);
        let (produced, consumed) = (producer.wait(), consumer.wait());
        let ok = |s: std::io::Result<std::process::ExitStatus>| s.is_ok_and(|s| s.success());
        if written.is_err() || !ok(produced) || !ok(consumed) {
            return Err(format!("copying files to {} failed", self.name()));
        }
        Ok(())
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn words<const N: usize>(items: [&str; N]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Where the imported artifact is, relative to the host's temp directory.
pub enum ArtifactAt {
    /// The command takes no artifact (rollback, status by rev).
    None,
    /// The shipped files themselves (`--artifact TMP`).
    Shipped,
    /// The out-link of the build (`--artifact TMP/result`).
    Built,
}

/// One image command for every host.
pub struct Job {
    /// `import`, `status` or `rollback`.
    pub sub: &'static str,
    /// The arguments after `image SUB`, without `--host` and `--artifact`.
    pub args: Vec<String>,
    /// Local files shipped flat into the temp directory.
    pub ship: Vec<PathBuf>,
    pub artifact: ArtifactAt,
    /// build-import: the git working tree to stream and the flake reference to build.
    pub build: Option<(PathBuf, String)>,
}

/// Runs `job` on each host (`None`: this machine); prints every host's output and, for several
/// hosts, the closing table. Exit status: the host's own for one host, 1 when any of several
/// failed.
pub fn run(job: &Job, hosts: &[String]) -> Result<ExitCode, String> {
    let runners: Vec<Runner> = if hosts.is_empty() {
        vec![Runner::Local]
    } else {
        hosts.iter().map(|h| Runner::ssh(h)).collect()
    };
    let mut rows = Vec::new();
    let mut last_code = 0;
    for runner in &runners {
        let (code, out) = match run_on(runner, job) {
            Ok(result) => result,
            Err(message) => {
                eprintln!("pika-guest: error: {}: {message}", runner.name());
                (1, String::new())
            }
        };
        print!("{out}");
        let result = if code == 0 {
            "ok".to_string()
        } else {
            format!("FAILED (exit {code})")
        };
        let serves = out.lines().last().unwrap_or("").trim().to_string();
        rows.push((runner.name().to_string(), result, serves));
        if code != 0 {
            last_code = code;
        }
    }
    if runners.len() > 1 {
        let mut table = TextTable::new(["HOST", "RESULT", "SERVES"]);
        for (host, result, serves) in rows {
            let serves = if serves.is_empty() {
                "-".into()
            } else {
                serves
            };
            table.row([host, result, serves]);
        }
        println!("\n{table}");
        last_code = i32::from(last_code != 0);
    }
    Ok(ExitCode::from(u8::try_from(last_code).unwrap_or(1)))
}

/// One host: temp directory, shipping, build, the command, cleanup.
fn run_on(runner: &Runner, job: &Job) -> Result<(i32, String), String> {
    let local = matches!(runner, Runner::Local);
    let sudo = if local {
        false
    } else {
        let uid = runner
            .capture(&words(["id", "-u"]))
            .map_err(|_| format!("cannot reach {} over ssh", runner.name()))?;
        uid.trim() != "0"
    };
    let parent = if local {
        env_or("TMPDIR", "/tmp")
    } else {
        env_or("PIKA_IMAGE_REMOTE_TMPDIR", "/tmp")
    };
    let tmp = runner
        .capture(&[
            "mktemp".into(),
            "-d".into(),
            format!("{parent}/pika-incus-image.XXXXXX"),
        ])?
        .trim()
        .to_string();
    if !tmp.starts_with('/') {
        return Err(format!("mktemp returned '{tmp}', not an absolute path"));
    }
    let result = run_in(runner, job, &tmp, sudo);
    if let Err(e) = runner.capture(&["rm".into(), "-rf".into(), "--".into(), tmp.clone()]) {
        eprintln!("pika-guest: error: could not remove {tmp}: {e}");
    }
    result
}

fn run_in(runner: &Runner, job: &Job, tmp: &str, sudo: bool) -> Result<(i32, String), String> {
    let local = matches!(runner, Runner::Local);
    let mut untar = words(["tar", "-xf", "-", "-C"]);
    untar.push(tmp.into());
    if let Some((tree, _)) = &job.build {
        let list = tree_files(tree)?;
        let mut tar = Command::new("tar");
        tar.arg("-C")
            .arg(tree)
            .args(["--null", "-T", "-", "-cf", "-"]);
        runner.pipe(tar, &list, &untar)?;
    }
    let guest_remote = std::env::var("PIKA_GUEST_REMOTE")
        .ok()
        .filter(|v| !v.is_empty());
    let own = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let mut ship = job.ship.clone();
    if !local && guest_remote.is_none() {
        ship.push(own.clone());
    }
    if !ship.is_empty() {
        ship_files(runner, &ship, &untar)?;
    }
    if let Some((_, flake_ref)) = &job.build {
        eprintln!(
            "pika-guest: building {flake_ref} in {tmp} on {}",
            runner.name()
        );
        let mut build = words(["sh", "-c", "cd \"$1\" && shift && exec \"$@\"", "build"]);
        build.push(tmp.into());
        build.extend([
            env_or("PIKA_IMAGE_NIX", "nix"),
            "build".into(),
            "--out-link".into(),
            "result".into(),
            flake_ref.clone(),
        ]);
        let (code, out) = runner.output(&build)?;
        eprint!("{out}");
        if code != 0 {
            return Err(format!("nix build of {flake_ref} failed (exit {code})"));
        }
    }
    let guest = match (local, guest_remote) {
        (true, _) => own.to_string_lossy().into_owned(),
        (false, Some(installed)) => installed,
        (false, None) => format!("{tmp}/pika-guest"),
    };
    let mut command = Vec::new();
    if sudo {
        command.push("sudo".to_string());
    }
    command.extend([guest, "image".into(), job.sub.into()]);
    command.extend(job.args.iter().cloned());
    command.extend(["--host".into(), runner.name().into()]);
    match job.artifact {
        ArtifactAt::None => {}
        ArtifactAt::Shipped => command.extend(["--artifact".into(), tmp.into()]),
        ArtifactAt::Built => command.extend(["--artifact".into(), format!("{tmp}/result")]),
    }
    runner.output(&command)
}

/// Ships `files` flat into the host's temp directory, dereferenced.
fn ship_files(runner: &Runner, files: &[PathBuf], untar: &[String]) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!(
        "pika-guest-ship.{}.{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let result = (|| {
        let mut names = Vec::new();
        for file in files {
            let real = std::fs::canonicalize(file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let is_self = std::env::current_exe().is_ok_and(|own| own == *file);
            let name = if is_self {
                "pika-guest".into()
            } else {
                file_name(file)
            };
            std::os::unix::fs::symlink(&real, dir.join(&name))
                .map_err(|e| format!("cannot link {}: {e}", real.display()))?;
            names.push(name);
        }
        let mut tar = Command::new("tar");
        tar.arg("-C").arg(&dir).arg("-chf").arg("-").args(&names);
        runner.pipe(tar, &[], untar)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// NUL-separated paths of the working tree at `top`: tracked and untracked, not ignored, not
/// deleted.
fn tree_files(top: &Path) -> Result<Vec<u8>, String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(top)
        .args(["ls-files", "-co", "--exclude-standard", "-z"])
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !output.status.success() {
        return Err(format!("git ls-files failed in {}", top.display()));
    }
    let mut list = Vec::new();
    for path in output.stdout.split(|b| *b == 0).filter(|p| !p.is_empty()) {
        let relative = Path::new(std::str::from_utf8(path).map_err(|e| e.to_string())?);
        if top.join(relative).symlink_metadata().is_ok() {
            list.extend_from_slice(path);
            list.push(0);
        }
    }
    Ok(list)
}

/// The git working tree this command runs in (build-import streams it).
pub fn git_top() -> Result<PathBuf, String> {
    let output = Command::new("git")
        .args(["rev-parse", "--show-toplevel"])
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    let cwd = std::env::current_dir().unwrap_or_default();
    if !output.status.success() {
        return Err(format!(
            "build-import streams a git working tree; run it inside the repository ({} is not)",
            cwd.display()
        ));
    }
    Ok(PathBuf::from(
        String::from_utf8_lossy(&output.stdout).trim_end(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_reach_a_shell_intact() {
        for word in [
            "plain",
            "it's a \"dir\" $(touch x);touch x",
            "",
            "a b",
            "back\\slash",
            "new\nline",
        ] {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", sh_quote(word)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), word);
        }
    }

    #[test]
    fn hosts_are_never_options_or_code() {
        assert!(parse_host("builder@pika-build.example").is_ok());
        for bad in ["-oProxyCommand=x", "host;id", "a b", "", "h/x"] {
            assert!(parse_host(bad).is_err(), "{bad:?}");
        }
    }
}
