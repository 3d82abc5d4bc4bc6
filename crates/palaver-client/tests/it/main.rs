//! Integration tests: the SDK against the real server, started in-process by `palaver-testkit`.

mod connection;
mod conversations;
mod delivery;
mod horizon;
mod limits;
mod live;
mod paging;
mod permissions;
mod support;
mod walkthrough;
