//! The pg_config of a cross build, answered natively. A cross build's toolchain is the
//! target's, so its pg_config is a program of the target that runs under emulation: about
//! 30 ms a call here, and PGXS asks it eleven questions every time make reads its
//! makefiles (a build runs make at least twice), which made the make steps of an arm64
//! PGXS build up to ten times slower than the same steps for amd64. The stand-in asks
//! the real one once, keeps its full answer (`NAME = value` lines) beside the build, and
//! answers from it; anything it cannot answer (`--help`, a question it has no line for, a
//! mistake) goes to the real one, so its output and errors stay the real one's.
//!
//! Owns the stand-in's text. Where it is put and which builds get it is the executors'
//! (both give it to builds whose toolchain is not this machine's architecture).

use super::executor::shell_quote;

/// The stand-in for the pg_config at `real`, keeping the real one's answer in the file
/// `answers` (made on the first call; the build user must be able to write there).
pub fn stand_in(real: &str, answers: &str) -> String {
    format!(
        r#"#!/bin/sh
# azb: {real}, answered natively from its own full answer (kept in {answers}).
real={real_quoted}
answers={answers_quoted}
if [ ! -s "$answers" ]; then
  if "$real" >"$answers.$$" 2>/dev/null; then
    mv -f "$answers.$$" "$answers"
  else
    rm -f "$answers.$$"
    exec "$real" "$@"
  fi
fi
[ $# -gt 0 ] || exec cat "$answers"
# Every question must have its line, or the real one answers them all.
awk -v answers="$answers" '
BEGIN {{
  while ((getline line < answers) > 0) {{
    at = index(line, " = ")
    if (at > 0) value[substr(line, 1, at - 1)] = substr(line, at + 3)
  }}
  for (i = 1; i < ARGC; i++) {{
    key = toupper(substr(ARGV[i], 3))
    if (substr(ARGV[i], 1, 2) != "--" || !(key in value)) exit 3
    text = text value[key] "\n"
  }}
  printf "%s", text
}}' "$@" || exec "$real" "$@"
"#,
        real_quoted = shell_quote(real),
        answers_quoted = shell_quote(answers),
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;

    use super::stand_in;
    use crate::fs::err;

    /// A pg_config that answers like PostgreSQL's (its lines are PostgreSQL 18's own
    /// shapes: a value with a leading space, an empty one, quotes) and counts its calls.
    fn fake_real(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("real_pg_config");
        let script = format!(
            r#"#!/bin/sh
echo call >> {calls}
if [ $# -eq 0 ]; then
  printf '%s\n' 'BINDIR = /usr/lib/postgresql/18/bin' 'INCLUDEDIR-SERVER = /usr/lib/postgresql/18/include/server' \
    "CONFIGURE =  '--prefix' '/opt/postgresql' 'CLANG=clang-16'" 'CFLAGS_SL = -fPIC' 'LDFLAGS_EX = ' \
    'LDFLAGS = -Wl,--as-needed -Wl,-rpath,'"'"'/opt/postgresql/lib'"'"',--enable-new-dtags' 'VERSION = PostgreSQL 18.6'
  exit 0
fi
for arg; do
  case $arg in
    --bindir|--includedir-server|--configure|--cflags_sl|--ldflags_ex|--ldflags|--version) ;;
    --help) echo "usage: pg_config [OPTION]..."; exit 0 ;;
    *) echo "pg_config: invalid argument: $arg" >&2; exit 1 ;;
  esac
done
for arg; do
  case $arg in
    --bindir) echo /usr/lib/postgresql/18/bin ;;
    --includedir-server) echo /usr/lib/postgresql/18/include/server ;;
    --configure) echo " '--prefix' '/opt/postgresql' 'CLANG=clang-16'" ;;
    --cflags_sl) echo -fPIC ;;
    --ldflags_ex) echo ;;
    --ldflags) echo "-Wl,--as-needed -Wl,-rpath,'/opt/postgresql/lib',--enable-new-dtags" ;;
    --version) echo "PostgreSQL 18.6" ;;
  esac
done
"#,
            calls = dir.join("calls").display()
        );
        err::write(&path, script).unwrap();
        make_executable(&path);
        path
    }

    fn make_executable(path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        err::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn run(program: &Path, args: &[&str]) -> (bool, String, String) {
        let out = crate::fs::output_of_written_program(Command::new(program).args(args));
        (
            out.status.success(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }

    #[test]
    fn the_stand_in_answers_as_the_real_one_and_asks_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let real = fake_real(dir.path());
        let answers = dir.path().join("answers");
        let path = dir.path().join("pg_config");
        let text = stand_in(&real.display().to_string(), &answers.display().to_string());
        err::write(&path, text).unwrap();
        make_executable(&path);
        let questions: [&[&str]; 9] = [
            &["--bindir"],
            &["--includedir-server"],
            &["--configure"],
            &["--ldflags_ex"],
            &["--ldflags"],
            &["--version", "--cflags_sl", "--bindir"],
            &[],
            &["--help"],
            &["--bindir", "--nonsense"],
        ];
        for args in questions {
            let real_answer = run(&real, args);
            // Asked first, so the real one's call count below is the stand-in's alone.
            assert_eq!(run(&path, args), real_answer, "pg_config {args:?}");
        }
        let calls = || {
            err::read_to_string(dir.path().join("calls"))
                .unwrap()
                .lines()
                .count()
        };
        // Nine questions to the real one above, its full answer once, and the two it could
        // not answer (--help and the mistake) went to it.
        assert_eq!(calls(), 9 + 1 + 2);
        assert!(answers.is_file());
        assert_eq!(run(&path, &["--bindir"]).1, "/usr/lib/postgresql/18/bin\n");
        assert_eq!(
            calls(),
            12,
            "an answered question does not run the real one"
        );
    }

    #[test]
    fn a_real_one_that_fails_speaks_for_itself_and_leaves_no_answers() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real_pg_config");
        err::write(
            &real,
            "#!/bin/sh\necho 'cannot execute: exec format error' >&2\nexit 126\n",
        )
        .unwrap();
        make_executable(&real);
        let answers = dir.path().join("answers");
        let path = dir.path().join("pg_config");
        err::write(
            &path,
            stand_in(&real.display().to_string(), &answers.display().to_string()),
        )
        .unwrap();
        make_executable(&path);
        let out = crate::fs::output_of_written_program(Command::new(&path).arg("--pgxs"));
        assert_eq!(out.status.code(), Some(126));
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "cannot execute: exec format error\n"
        );
        assert!(!answers.exists());
        // No temporary answer left either: only the two programs.
        assert_eq!(err::read_dir(dir.path()).unwrap().count(), 2);
    }
}
