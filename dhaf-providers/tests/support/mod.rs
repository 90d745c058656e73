//! Real servers the integration tests run against.

pub mod etcd;
pub mod nodes;
