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

/// Implements an [`EventSource`](crate::EventSource)'s `register`, `reregister` and `unregister`
/// by forwarding them to one part of the source: `forward_registration!(source)` for a child
/// source in field `source`, `forward_registration!(registration, notify)` for a
/// `NotifyRegistration` of the `Notify` in field `notify`.
macro_rules! forward_registration {
    ($child:ident) => {
        fn register(
            &mut self,
            poll: &mut $crate::Poll,
            token_factory: &mut $crate::TokenFactory,
        ) -> $crate::Result<()> {
            self.$child.register(poll, token_factory)
        }

        fn reregister(
            &mut self,
            poll: &mut $crate::Poll,
            token_factory: &mut $crate::TokenFactory,
        ) -> $crate::Result<()> {
            self.$child.reregister(poll, token_factory)
        }

        fn unregister(&mut self, poll: &mut $crate::Poll) -> $crate::Result<()> {
            self.$child.unregister(poll)
        }
    };
    ($registration:ident, $notify:ident) => {
        fn register(
            &mut self,
            poll: &mut $crate::Poll,
            token_factory: &mut $crate::TokenFactory,
        ) -> $crate::Result<()> {
            self.$registration
                .register(&self.$notify, poll, token_factory)
        }

        fn reregister(
            &mut self,
            poll: &mut $crate::Poll,
            token_factory: &mut $crate::TokenFactory,
        ) -> $crate::Result<()> {
            self.$registration
                .reregister(&self.$notify, poll, token_factory)
        }

        fn unregister(&mut self, poll: &mut $crate::Poll) -> $crate::Result<()> {
            self.$registration.unregister(&self.$notify, poll)
        }
    };
}
pub(crate) use forward_registration;
