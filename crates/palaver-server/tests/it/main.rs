//! Integration tests: the real server on a free port with its own SQLite database, driven over HTTP.

mod api;
mod authorization;
mod channels;
mod console;
mod conversations;
mod errors;
mod hardening;
mod limits;
mod media;
mod messages;
mod observer;
mod operations;
mod participants;
mod push;
mod realtime;
mod timers_and_restart;
mod twilsock;
mod users_roles_services;
mod webhooks;
