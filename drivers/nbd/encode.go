package nbd

import (
	"fmt"

	"github.com/mdlayher/netlink"
)

// The attribute payloads of the commands. Each netlink attribute is
//
//	0        2        4
//	+--------+--------+----------------------+---------+
//	| len 16 | type 16| value (len-4 bytes)  | pad to 4|
//	+--------+--------+----------------------+---------+
//
// in host byte order; NBD_ATTR_SOCKETS nests one NBD_SOCK_ITEM per
// socket, each nesting one NBD_SOCK_FD (u32).

func encodeConnect(c Config, fds []int) ([]byte, error) {
	if err := c.validate(len(fds)); err != nil {
		return nil, err
	}
	bs := c.BlockSize
	if bs == 0 {
		bs = 4096
	}
	ae := netlink.NewAttributeEncoder()
	if c.Index >= 0 {
		ae.Uint32(attrIndex, uint32(c.Index))
	}
	ae.Uint64(attrSizeBytes, c.Size)
	ae.Uint64(attrBlockSizeBytes, bs)
	ae.Uint64(attrServerFlags, c.ServerFlags)
	ae.Uint64(attrClientFlags, c.ClientFlags)
	if c.Timeout > 0 {
		ae.Uint64(attrTimeout, seconds(c.Timeout))
	}
	if c.DeadConnTimeout > 0 {
		ae.Uint64(attrDeadConnTimeout, seconds(c.DeadConnTimeout))
	}
	if c.Identifier != "" {
		ae.String(attrBackendID, c.Identifier)
	}
	encodeSockets(ae, fds)
	return ae.Encode()
}

func encodeReconfigure(index int, r Reconfig, fds []int) ([]byte, error) {
	if index < 0 || len(fds) == 0 || r.Timeout < 0 || r.DeadConnTimeout < 0 {
		return nil, fmt.Errorf("nbd: reconfigure of device %d with %d sockets, timeouts %v and %v", index, len(fds), r.Timeout, r.DeadConnTimeout)
	}
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(attrIndex, uint32(index))
	if r.Timeout > 0 {
		ae.Uint64(attrTimeout, seconds(r.Timeout))
	}
	if r.DeadConnTimeout > 0 {
		ae.Uint64(attrDeadConnTimeout, seconds(r.DeadConnTimeout))
	}
	if r.Identifier != "" {
		ae.String(attrBackendID, r.Identifier)
	}
	encodeSockets(ae, fds)
	return ae.Encode()
}

func encodeStatus(index int) ([]byte, error) {
	if index < 0 {
		return nil, fmt.Errorf("nbd: status of device %d", index)
	}
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(attrIndex, uint32(index))
	return ae.Encode()
}

// decodeStatus reads STATUS's reply: whether device index is in the
// list and connected.
func decodeStatus(b []byte, index int) (bool, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return false, fmt.Errorf("nbd: status reply: %w", err)
	}
	connected := false
	for ad.Next() {
		if ad.Type() != attrDeviceList {
			continue
		}
		ad.Nested(func(list *netlink.AttributeDecoder) error {
			for list.Next() {
				if list.Type() != deviceItem {
					continue
				}
				list.Nested(func(item *netlink.AttributeDecoder) error {
					idx, conn := -1, false
					for item.Next() {
						switch item.Type() {
						case deviceIndex:
							idx = int(item.Uint32())
						case deviceConnected:
							conn = item.Uint8() != 0
						}
					}
					if idx == index && conn {
						connected = true
					}
					return nil
				})
			}
			return nil
		})
	}
	if err := ad.Err(); err != nil {
		return false, fmt.Errorf("nbd: status reply: %w", err)
	}
	return connected, nil
}

func encodeDisconnect(index int) ([]byte, error) {
	if index < 0 {
		return nil, fmt.Errorf("nbd: disconnect of device %d", index)
	}
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(attrIndex, uint32(index))
	return ae.Encode()
}

func encodeSockets(ae *netlink.AttributeEncoder, fds []int) {
	ae.Nested(attrSockets, func(nae *netlink.AttributeEncoder) error {
		for _, fd := range fds {
			nae.Nested(sockItem, func(sae *netlink.AttributeEncoder) error {
				sae.Uint32(sockFD, uint32(fd))
				return nil
			})
		}
		return nil
	})
}

// decodeIndex reads NBD_ATTR_INDEX from CONNECT's reply.
func decodeIndex(b []byte) (int, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return 0, fmt.Errorf("nbd: connect reply: %w", err)
	}
	index := -1
	for ad.Next() {
		if ad.Type() == attrIndex {
			index = int(ad.Uint32())
		}
	}
	if err := ad.Err(); err != nil {
		return 0, fmt.Errorf("nbd: connect reply: %w", err)
	}
	if index < 0 {
		return 0, fmt.Errorf("nbd: connect reply without NBD_ATTR_INDEX")
	}
	return index, nil
}
