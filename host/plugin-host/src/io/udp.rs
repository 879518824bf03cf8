//! The `udp-socket` resource.

use std::net::UdpSocket;

use wasmtime::component::Resource;

use super::{MAX_READ, Pollable, address, denied, nb, parse_addr, wit};
use crate::state::PluginState;

/// Host side of a guest `udp-socket`.
pub type UdpSocketRes = Pollable<UdpSocket>;

const SOCKET: &str = "udp-socket";

impl wit::HostUdpSocket for PluginState {
    fn send_to(
        &mut self,
        self_: Resource<UdpSocketRes>,
        data: Vec<u8>,
        to: String,
    ) -> Result<u32, wit::IoError> {
        let _t = crate::stats::HostCall::start();
        let addr = parse_addr(&to).map_err(wit::IoError::Failed)?;
        self.io
            .caps
            .check_connect(addr)
            .map_err(|m| wit::IoError::Failed(denied(m)))?;
        self.pollable(&self_, SOCKET)?
            .send_to(&data, addr)
            .map(|n| n as u32)
            .map_err(|e| nb(&format!("send to {addr}"), e))
    }

    fn recv_from(
        &mut self,
        self_: Resource<UdpSocketRes>,
        max: u32,
    ) -> Result<(Vec<u8>, String), wit::IoError> {
        let _t = crate::stats::HostCall::start();
        let s = self.pollable(&self_, SOCKET)?;
        let mut buf = vec![0u8; max.min(MAX_READ) as usize];
        let (n, from) = s.recv_from(&mut buf).map_err(|e| nb("receive", e))?;
        buf.truncate(n);
        Ok((buf, from.to_string()))
    }

    fn local_address(&mut self, self_: Resource<UdpSocketRes>) -> Result<String, wit::IoError> {
        let _t = crate::stats::HostCall::start();
        address(self.pollable(&self_, SOCKET)?.local_addr(), "local address")
    }

    fn drop(&mut self, rep: Resource<UdpSocketRes>) -> wasmtime::Result<()> {
        let _t = crate::stats::HostCall::start();
        self.drop_pollable(rep);
        Ok(())
    }
}
