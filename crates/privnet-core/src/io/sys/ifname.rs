//! Linux interface names: the one limit both the TUN device and rtnetlink check. A leaf module, so
//! that `tun` (which sets the MTU through `netlink`) and `netlink` do not import each other.

/// Longest interface name the kernel accepts (`IFNAMSIZ - 1`).
pub const MAX_NAME_LEN: usize = libc::IFNAMSIZ - 1;
