//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use runner::{Builder, Report, Runner};

/// Collects every report a Runner makes.
#[derive(Clone, Default)]
pub struct Reports(Arc<Mutex<Vec<Report>>>);

impl Reports {
    pub fn install(&self, builder: Builder) -> Builder {
        let sink = self.0.clone();
        builder.exception_handler(move |r: &Report| sink.lock().unwrap().push(r.clone()))
    }

    pub fn take(&self) -> Vec<Report> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// The two loop flavors every task behaviour is checked on.
#[derive(Clone, Copy, Debug)]
pub enum Flavor {
    CurrentThread,
    MultiThread,
}

pub const FLAVORS: [Flavor; 2] = [Flavor::CurrentThread, Flavor::MultiThread];

pub fn builder(flavor: Flavor) -> Builder {
    let b = Runner::builder().handle_sigint(false);
    match flavor {
        Flavor::CurrentThread => b,
        Flavor::MultiThread => b.loop_factory(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
        }),
    }
}
