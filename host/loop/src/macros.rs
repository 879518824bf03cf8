//! `batch_register!`, `batch_reregister!`, `batch_unregister!`: register the children of a
//! composite [`EventSource`](crate::EventSource) in one expression.

/// Registers several child sources with the same poll and token factory, stopping at the first
/// error: `batch_register!(poll, token_factory, self.a, self.b)`.
#[macro_export]
macro_rules! batch_register {
    ($poll:ident, $token_fac:ident, $( $source:expr ),* $(,)?) => {{
        $( $source.register($poll, $token_fac)?; )*
        $crate::Result::<_>::Ok(())
    }};
}

/// Re-registers several child sources: `batch_reregister!(poll, token_factory, self.a, self.b)`.
#[macro_export]
macro_rules! batch_reregister {
    ($poll:ident, $token_fac:ident, $( $source:expr ),* $(,)?) => {{
        $( $source.reregister($poll, $token_fac)?; )*
        $crate::Result::<_>::Ok(())
    }};
}

/// Unregisters several child sources: `batch_unregister!(poll, self.a, self.b)`.
#[macro_export]
macro_rules! batch_unregister {
    ($poll:ident, $( $source:expr ),* $(,)?) => {{
        $( $source.unregister($poll)?; )*
        $crate::Result::<_>::Ok(())
    }};
}
