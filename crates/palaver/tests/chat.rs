//! `palaver chat` as two people use it: each in their own process, talking through a real server.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_palaver");

struct Terminal {
    child: Child,
    input: ChildStdin,
    output: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Terminal {
    fn open(args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            .env("PALAVER_LOG", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start palaver");
        let input = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, output) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        Self { child, input, output, seen: Vec::new() }
    }

    fn type_line(&mut self, line: &str) {
        writeln!(self.input, "{line}").unwrap();
        self.input.flush().unwrap();
    }

    /// Waits for a line containing `text` (up to 15 s) and returns it.
    fn expect(&mut self, text: &str) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(text)) {
            return line.clone();
        }
        loop {
            match self.output.recv_timeout(Duration::from_secs(15)) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => panic!("never saw {text:?}; saw {:#?}", self.seen),
            }
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn two_people_chat_through_the_terminal_client() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let mut server = Terminal::open(&["serve", "--listen", "127.0.0.1:0", "--data-dir", &data]);
    let address = server.expect("listening on");
    let url = address.split("listening on ").nth(1).unwrap().trim().replacen("http", "ws", 1) + "/v1/realtime";
    let chat = |identity: &str| {
        Terminal::open(&["chat", "--identity", identity, "--conversation", "lobby", "--url", &url, "--data-dir", &data])
    };

    let mut alice = chat("alice");
    alice.expect("* in lobby");
    let mut bob = chat("bob");
    bob.expect("* in lobby");
    alice.expect("bob joined");

    alice.type_line("hello bob");
    bob.expect("alice is typing");
    bob.expect("alice: hello bob");
    alice.expect("alice: hello bob");

    bob.type_line("/who");
    bob.expect("alice");
    bob.type_line("/read");
    bob.expect("* unread: 0");
    alice.type_line("are you there?");
    bob.expect("alice: are you there?");
    bob.type_line("/unread");
    bob.expect("* unread: 1");

    alice.type_line("/name The Lobby");
    bob.expect("conversation updated");
    bob.type_line("/nonsense");
    bob.expect("unknown command");
    bob.type_line("/leave");
    bob.expect("* left");
    alice.expect("bob left");
    bob.type_line("/quit");
    assert!(bob.child.wait().unwrap().success());
}
