//! Engine.IO v4 and Socket.IO v5, written sans-IO.
#![warn(missing_docs)]
