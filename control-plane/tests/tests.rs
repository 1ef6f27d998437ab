//! End-to-end tests of the real `killkrill` binary: started on free ports with a
//! temporary data directory, driven by real clients (logger(1), raw sockets, HTTP).
mod harness;

mod capture;
mod cli;
mod ingest;
mod observability;
mod parse_command;
mod shutdown;
