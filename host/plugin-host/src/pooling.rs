//! The pooling instance allocator, with a probe and a fallback.
//!
//! The pooling allocator reserves the address space of every instance slot
//! up front (about 4 GiB of virtual memory per linear memory). Where that
//! reservation fails (a small `ulimit -v`, a 32-bit or restricted platform,
//! an absurd pool size) the engine is built with on-demand allocation
//! instead, with a warning: plugins still run, with the same limits.

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Which instance allocator an engine ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocator {
    /// On-demand allocation (none requested).
    OnDemand,
    /// The pooling allocator, sized for this many component instances.
    Pooling(u32),
    /// Pooling was requested for this many instances but the platform
    /// refused it; on-demand allocation is used.
    PoolingUnavailable(u32),
}

impl Allocator {
    /// Whether the pooling allocator is in use.
    pub fn is_pooling(self) -> bool {
        matches!(self, Allocator::Pooling(_))
    }
}

/// Pool sizes for `n` plugin instances of at most `max_memory` bytes of
/// linear memory each.
fn pool_config(n: u32, max_memory: usize) -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(8))
        .total_memories(n.saturating_mul(2))
        .total_tables(n.saturating_mul(4))
        .max_memory_size(max_memory);
    pool
}

/// Builds the engine from `config`, with the pooling allocator for
/// `pooling` instances if requested and possible (see the module docs).
pub(crate) fn build_engine(
    config: &mut Config,
    pooling: Option<u32>,
    max_memory: usize,
) -> wasmtime::Result<(Engine, Allocator)> {
    let Some(n) = pooling else {
        return Ok((Engine::new(config)?, Allocator::OnDemand));
    };
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool_config(
        n, max_memory,
    )));
    match Engine::new(config) {
        Ok(e) => Ok((e, Allocator::Pooling(n))),
        Err(e) => {
            tracing::warn!(
                instances = n,
                "pooling allocator unavailable ({}); falling back to on-demand allocation",
                super::error::chain(&e)
            );
            config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
            Ok((Engine::new(config)?, Allocator::PoolingUnavailable(n)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{EngineOptions, PluginEngine};
    use super::Allocator;

    fn engine(pooling: Option<u32>) -> PluginEngine {
        PluginEngine::new(&EngineOptions {
            pooling_instances: pooling,
            ..Default::default()
        })
        .expect("an engine, pooling or not")
    }

    #[test]
    fn no_pooling_requested_is_on_demand() {
        assert_eq!(engine(None).allocator(), Allocator::OnDemand);
    }

    #[test]
    fn a_modest_pool_is_used_where_the_platform_allows_it() {
        let a = engine(Some(8)).allocator();
        // 64-bit Linux reserves 16 memories' address space without trouble;
        // anywhere else a fallback is also acceptable.
        if cfg!(all(target_os = "linux", target_pointer_width = "64")) {
            assert_eq!(a, Allocator::Pooling(8));
        } else {
            assert!(matches!(
                a,
                Allocator::Pooling(8) | Allocator::PoolingUnavailable(8)
            ));
        }
    }

    #[test]
    fn an_impossible_pool_falls_back_to_on_demand_and_still_runs_components() {
        // u32::MAX instances need far more address space than any machine has.
        let e = engine(Some(u32::MAX));
        assert_eq!(e.allocator(), Allocator::PoolingUnavailable(u32::MAX));
        assert!(!e.allocator().is_pooling());
        let c = wat::parse_str("(component)").unwrap();
        let component = e.compile(&c).expect("the fallback engine compiles");
        let mut store = wasmtime::Store::new(e.engine(), ());
        wasmtime::component::Linker::<()>::new(e.engine())
            .instantiate(&mut store, &component)
            .expect("and instantiates");
    }
}
