//! Run-time support for compiled Kestrel models.
