package nbd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Magic numbers of the protocol.
const (
	magicNBD        = 0x4e42444d41474943 // "NBDMAGIC"
	magicIHaveOpt   = 0x49484156454f5054 // "IHAVEOPT"
	magicOptReply   = 0x3e889045565a9
	magicRequest    = 0x25609513
	magicSimpleRepl = 0x67446698
)

// Handshake flags (server) and client flags.
const (
	flagFixedNewstyle = 1 << 0
	flagNoZeroes      = 1 << 1

	clientFixedNewstyle = 1 << 0
	clientNoZeroes      = 1 << 1
)

// Transmission flags, as sent in NBD_INFO_EXPORT and handed to the kernel.
const (
	FlagHasFlags         = 1 << 0
	FlagReadOnly         = 1 << 1
	FlagSendFlush        = 1 << 2
	FlagSendFUA          = 1 << 3
	FlagRotational       = 1 << 4
	FlagSendTrim         = 1 << 5
	FlagSendWriteZeroes  = 1 << 6
	FlagSendDF           = 1 << 7
	FlagCanMultiConn     = 1 << 8
	FlagSendResize       = 1 << 9
	FlagSendCache        = 1 << 10
	FlagSendFastZero     = 1 << 11
	flagBlockStatPayload = 1 << 12
)

// Options (handshake phase).
const (
	optExportName       = 1
	optAbort            = 2
	optList             = 3
	optStartTLS         = 5
	optInfo             = 6
	optGo               = 7
	optStructuredReply  = 8
	optListMetaContext  = 9
	optSetMetaContext   = 10
	optExtendedHeaders  = 11
	repAck              = 1
	repServer           = 2
	repInfo             = 3
	repErrUnsup         = 1<<31 + 1
	repErrPolicy        = 1<<31 + 2
	repErrInvalid       = 1<<31 + 3
	repErrUnknown       = 1<<31 + 6
	repErrShutdown      = 1<<31 + 7
	repErrTooBig        = 1<<31 + 9
	infoExport          = 0
	infoName            = 1
	infoDescription     = 2
	infoBlockSize       = 3
	maxNameLen          = 4096
	maxOptionLen        = 8192 // GO with a 4096-byte name and a generous info list
	optionHeaderLen     = 16
	requestHeaderLen    = 28
	simpleReplyLen      = 16
	exportNameZeroesLen = 124
)

// Commands (transmission phase).
const (
	cmdRead        = 0
	cmdWrite       = 1
	cmdDisc        = 2
	cmdFlush       = 3
	cmdTrim        = 4
	cmdCache       = 5
	cmdWriteZeroes = 6
	cmdBlockStatus = 7
	cmdResize      = 8

	cmdFlagFUA      = 1 << 0
	cmdFlagNoHole   = 1 << 1
	cmdFlagDF       = 1 << 2
	cmdFlagReqOne   = 1 << 3
	cmdFlagFastZero = 1 << 4
)

// Errno values of the simple reply.
const (
	errPerm      = 1
	errIO        = 5
	errNoMem     = 12
	errInval     = 22
	errNoSpc     = 28
	errOverflow  = 75
	errNotSup    = 95
	errShutdown  = 108
	maxDoSLength = 1 << 25 // payloads up to this are never treated as an attack
)

// errProtocol marks a violation after which the connection is dropped
// (a hard disconnect, as the protocol allows).
var errProtocol = errors.New("nbd: protocol violation")

// request is one transmission-phase request header.
//
//	0               4       6       8                              16
//	+---------------+-------+-------+-------------------------------+
//	| magic 0x25609513      | flags | type  | cookie (64)          |
//	+-------------------------------+-------------------------------+
//	16                              24              28
//	| offset (64)                   | length (32)   | payload (WRITE only)
type request struct {
	flags  uint16
	typ    uint16
	cookie uint64
	offset uint64
	length uint32
}

// parseRequest decodes a request header; b must hold requestHeaderLen
// bytes. A wrong magic is a protocol violation.
func parseRequest(b []byte) (request, error) {
	if len(b) < requestHeaderLen {
		return request{}, io.ErrUnexpectedEOF
	}
	if m := binary.BigEndian.Uint32(b); m != magicRequest {
		return request{}, fmt.Errorf("%w: request magic %#x", errProtocol, m)
	}
	return request{
		flags:  binary.BigEndian.Uint16(b[4:]),
		typ:    binary.BigEndian.Uint16(b[6:]),
		cookie: binary.BigEndian.Uint64(b[8:]),
		offset: binary.BigEndian.Uint64(b[16:]),
		length: binary.BigEndian.Uint32(b[24:]),
	}, nil
}

// appendSimpleReply appends a simple reply header:
//
//	0                4                8                               16
//	+----------------+----------------+-------------------------------+
//	| magic 0x67446698| error (32)    | cookie (64)                   |
//	+----------------+----------------+-------------------------------+
func appendSimpleReply(b []byte, errno uint32, cookie uint64) []byte {
	b = binary.BigEndian.AppendUint32(b, magicSimpleRepl)
	b = binary.BigEndian.AppendUint32(b, errno)
	return binary.BigEndian.AppendUint64(b, cookie)
}

// optionHeader is the client's option header in the handshake phase.
//
//	0                               8               12              16
//	+-------------------------------+---------------+---------------+
//	| magic "IHAVEOPT"              | option (32)   | length (32)   | data...
//	+-------------------------------+---------------+---------------+
type optionHeader struct {
	option uint32
	length uint32
}

func parseOptionHeader(b []byte) (optionHeader, error) {
	if len(b) < optionHeaderLen {
		return optionHeader{}, io.ErrUnexpectedEOF
	}
	if m := binary.BigEndian.Uint64(b); m != magicIHaveOpt {
		return optionHeader{}, fmt.Errorf("%w: option magic %#x", errProtocol, m)
	}
	return optionHeader{
		option: binary.BigEndian.Uint32(b[8:]),
		length: binary.BigEndian.Uint32(b[12:]),
	}, nil
}

// appendOptionReply appends one option reply:
//
//	0                               8               12              16             20
//	+-------------------------------+---------------+---------------+--------------+
//	| magic 0x3e889045565a9         | option (32)   | type (32)     | length (32)  | data...
//	+-------------------------------+---------------+---------------+--------------+
func appendOptionReply(b []byte, option, typ uint32, data []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, magicOptReply)
	b = binary.BigEndian.AppendUint32(b, option)
	b = binary.BigEndian.AppendUint32(b, typ)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

// infoRequest is the data of NBD_OPT_INFO and NBD_OPT_GO:
//
//	+---------------+----------------+----------+----------------------+
//	| name len (32) | name (len)     | n (16)   | n x info type (16)   |
//	+---------------+----------------+----------+----------------------+
type infoRequest struct {
	name  string
	infos []uint16
}

// errInvalidOption is answered with NBD_REP_ERR_INVALID.
var errInvalidOption = errors.New("nbd: malformed option data")

func parseInfoRequest(data []byte) (infoRequest, error) {
	if len(data) < 6 {
		return infoRequest{}, fmt.Errorf("%w: %d bytes, want at least 6", errInvalidOption, len(data))
	}
	nameLen := binary.BigEndian.Uint32(data)
	if uint64(nameLen) > uint64(len(data)-6) {
		return infoRequest{}, fmt.Errorf("%w: name length %d exceeds the option", errInvalidOption, nameLen)
	}
	if nameLen > maxNameLen {
		return infoRequest{}, fmt.Errorf("%w: name length %d over %d", errInvalidOption, nameLen, maxNameLen)
	}
	rest := data[4+nameLen:]
	n := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) != 2*n {
		return infoRequest{}, fmt.Errorf("%w: %d info requests in %d bytes", errInvalidOption, n, len(rest))
	}
	r := infoRequest{name: string(data[4 : 4+nameLen]), infos: make([]uint16, n)}
	for i := range r.infos {
		r.infos[i] = binary.BigEndian.Uint16(rest[2*i:])
	}
	return r, nil
}

// wants reports whether the client asked for information type t.
func (r infoRequest) wants(t uint16) bool {
	for _, x := range r.infos {
		if x == t {
			return true
		}
	}
	return false
}
