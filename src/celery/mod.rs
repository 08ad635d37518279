//! Celery message protocol v2 (JSON serializer) on kombu's Redis transport: the exact bytes a
//! Celery worker receives (envelope, headers, properties, body) and the list key a message goes
//! to, as `docs/celery-wire.md` describes them.
//!
//! Invariant: a message is a function of the occurrence, its options and the encoder (whose
//! `origin` alone names the rendering node); its task id is the deduplication key. It must not
//! do I/O: pushing is the `dispatch` module's job.

mod encode;
mod options;
mod pyrepr;

pub use encode::{EncodeError, Encoded, Encoder, KombuLayout, Occurrence, Trigger};
pub use options::{
    Expires, OptionsError, StoredOptions, TaskOptions, DEFAULT_QUEUE, MAX_EXPIRES_SECONDS,
};
pub use pyrepr::{py_repr, py_repr_list, py_repr_map};
