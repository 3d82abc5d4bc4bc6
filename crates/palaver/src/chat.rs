//! `palaver chat`: a line-based terminal chat client on the SDK. Messages, joins and typing appear live;
//! lines starting with `/` are commands (`/help`).

use std::io::Write;

use anyhow::{Context, Result};
use palaver_client::{
    Client, ClientError, Conversation, ConversationEvent, ConversationEventName, CreateConversationOptions, Direction,
    MessageContent, Paginator,
};
use tokio::io::AsyncBufReadExt;

const HELP: &str = "\
commands:
  /help                 this list
  /who                  participants
  /add IDENTITY         add a participant
  /remove IDENTITY      remove a participant
  /name TEXT            rename the conversation
  /attributes JSON      replace the conversation's attributes
  /history              show older messages (repeat to go further back)
  /read                 mark everything read
  /typing               tell the others you are typing (sending a message does too)
  /unread               show the unread count
  /list                 your conversations
  /switch SID|NAME      go to another conversation (joining it if needed)
  /leave                leave this conversation
  /quit                 exit
anything else is sent as a message";

fn say(line: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line.as_ref());
    let _ = out.flush();
}

fn describe(message: &palaver_client::Message) -> String {
    format!("[{}] {}: {}", message.index(), message.author().unwrap_or("?"), message.body().unwrap_or(""))
}

/// Finds a conversation by SID or unique name, creating it (with that unique name) when it does not exist,
/// and joins it.
async fn open_conversation(client: &Client, wanted: &str) -> Result<Conversation> {
    let found = if wanted.starts_with("CH") && wanted.len() == 34 {
        client.get_conversation_by_sid(wanted).await
    } else {
        client.get_conversation_by_unique_name(wanted).await
    };
    let conversation = match found {
        Ok(conversation) => conversation,
        Err(ClientError::Server { code: 20404, .. } | ClientError::NotFound(_)) => {
            say(format!("* creating conversation '{wanted}'"));
            client
                .create_conversation(CreateConversationOptions::new().unique_name(wanted).friendly_name(wanted))
                .await?
        }
        Err(other) => return Err(other.into()),
    };
    if conversation.status() != palaver_client::ConversationStatus::Joined {
        conversation.join().await.context("joining the conversation")?;
    }
    Ok(conversation)
}

fn listen(conversation: &Conversation) {
    let events = conversation.events();
    events.on(ConversationEventName::MessageAdded, |event| {
        if let ConversationEvent::MessageAdded(message) = event {
            say(describe(message));
        }
        Ok(())
    });
    events.on(ConversationEventName::ParticipantJoined, |event| {
        if let ConversationEvent::ParticipantJoined(p) = event {
            say(format!("* {} joined", p.identity().unwrap_or_else(|| "someone".into())));
        }
        Ok(())
    });
    events.on(ConversationEventName::ParticipantLeft, |event| {
        if let ConversationEvent::ParticipantLeft(p) = event {
            say(format!("* {} left", p.identity().unwrap_or_else(|| "someone".into())));
        }
        Ok(())
    });
    events.on(ConversationEventName::TypingStarted, |event| {
        if let ConversationEvent::TypingStarted(p) = event {
            say(format!("* {} is typing…", p.identity().unwrap_or_else(|| "someone".into())));
        }
        Ok(())
    });
    events.on(ConversationEventName::Updated, |event| {
        if let ConversationEvent::Updated { conversation, update_reasons } = event {
            let reasons: Vec<&str> = update_reasons.iter().map(|r| r.as_str()).collect();
            if reasons.iter().any(|r| *r == "friendlyName" || *r == "attributes") {
                say(format!("* conversation updated ({}): {:?}", reasons.join(", "), conversation.friendly_name()));
            }
        }
        Ok(())
    });
    events.on(ConversationEventName::UnreadCountChanged, |event| {
        if let ConversationEvent::UnreadCountChanged(Some(count)) = event
            && *count > 0
        {
            say(format!("* {count} unread"));
        }
        Ok(())
    });
}

/// Runs the chat until `/quit` or the end of input.
pub(crate) async fn run(url: &str, token: &str, conversation: Option<&str>) -> Result<()> {
    let client = Client::connect(url, token).await.context("connecting")?;
    say(format!("* connected as {}; /help lists commands", client.identity()));
    let mut current = match conversation {
        Some(wanted) => Some(enter(&client, wanted).await?),
        None => None,
    };
    let mut older: Option<Paginator<palaver_client::Message>> = None;
    if let Some(conv) = &current {
        older = show_recent(conv).await?;
    }
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let line = line.trim_end().to_string();
        if line.is_empty() {
            continue;
        }
        let (command, rest) = match line.strip_prefix('/') {
            Some(command) => command.split_once(' ').map_or((command, ""), |(c, r)| (c, r.trim())),
            None => ("", line.as_str()),
        };
        let result: Result<()> = async {
            match (command, current.as_ref()) {
                ("quit", _) => return Err(anyhow::anyhow!("quit")),
                ("help", _) => say(HELP),
                ("list", _) => {
                    let page = client.get_subscribed_conversations().await?;
                    for c in page.items() {
                        say(format!("  {} {}", c.sid(), c.unique_name().or(c.friendly_name()).unwrap_or_default()));
                    }
                }
                ("switch", _) => {
                    let conv = enter(&client, rest).await?;
                    older = show_recent(&conv).await?;
                    current = Some(conv);
                }
                (_, None) => say("* no conversation: /switch NAME first"),
                ("", Some(conv)) => {
                    conv.typing().await?;
                    conv.send_message(MessageContent::Text(rest.to_string()), None, None).await?;
                }
                ("who", Some(conv)) => {
                    for p in conv.get_participants().await? {
                        say(format!("  {} {}", p.sid(), p.identity().unwrap_or_else(|| "(non-chat)".into())));
                    }
                }
                ("add", Some(conv)) => {
                    conv.add(rest, None).await?;
                }
                ("remove", Some(conv)) => conv.remove_participant(rest).await?,
                ("name", Some(conv)) => {
                    conv.update_friendly_name(rest).await?;
                }
                ("attributes", Some(conv)) => {
                    let value: serde_json::Value = serde_json::from_str(rest).context("attributes must be JSON")?;
                    conv.update_attributes(value).await?;
                }
                ("history", Some(_)) => match older.take() {
                    Some(page) if page.has_prev_page() => {
                        let previous = page.prev_page().await?;
                        for m in previous.items() {
                            say(describe(m));
                        }
                        older = Some(previous);
                    }
                    other => {
                        older = other;
                        say("* no older messages");
                    }
                },
                ("typing", Some(conv)) => conv.typing().await?,
                ("read", Some(conv)) => {
                    let unread = conv.set_all_messages_read().await?;
                    say(format!("* unread: {unread}"));
                }
                ("unread", Some(conv)) => match conv.get_unread_messages_count().await? {
                    Some(count) => say(format!("* unread: {count}")),
                    None => say("* unread: no read horizon yet"),
                },
                ("leave", Some(conv)) => {
                    conv.leave().await?;
                    say("* left");
                    current = None;
                }
                (other, _) => say(format!("* unknown command /{other}; /help lists commands")),
            }
            Ok(())
        }
        .await;
        if let Err(err) = result {
            if err.to_string() == "quit" {
                break;
            }
            say(format!("! {err}"));
        }
    }
    client.shutdown().await;
    Ok(())
}

async fn enter(client: &Client, wanted: &str) -> Result<Conversation> {
    let conversation = open_conversation(client, wanted).await?;
    listen(&conversation);
    say(format!(
        "* in {} ({})",
        conversation.unique_name().or(conversation.friendly_name()).unwrap_or_default(),
        conversation.sid()
    ));
    Ok(conversation)
}

async fn show_recent(conversation: &Conversation) -> Result<Option<Paginator<palaver_client::Message>>> {
    let page = conversation.get_messages(Some(20), None, Some(Direction::Backwards)).await?;
    for message in page.items() {
        say(describe(message));
    }
    Ok(Some(page))
}
