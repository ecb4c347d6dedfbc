package flasher

import (
	"errors"
	"fmt"
)

// Conditions a caller branches on. Errors returned by this package wrap
// one of these (or an *Error from the board) and say which board and which
// command failed.
var (
	// ErrTimeout means the board did not answer within the timeout, after
	// every retry.
	ErrTimeout = errors.New("board did not answer")
	// ErrDisconnected means the serial port went away (cable pulled, USB
	// adapter reset) or failed.
	ErrDisconnected = errors.New("serial port disconnected")
	// ErrClosed means the client was closed.
	ErrClosed = errors.New("link closed")
	// ErrProtocol means the board answered with something that is not a
	// valid answer to the request.
	ErrProtocol = errors.New("board broke the protocol")
	// ErrVerify means data read back from the board did not match what was
	// written (a hash after an upload).
	ErrVerify = errors.New("verification failed")
	// ErrNoPort means no serial port matched a rule.
	ErrNoPort = errors.New("no matching serial port")
	// ErrTooLarge means the board announced a transfer longer than the
	// caller's limit.
	ErrTooLarge = errors.New("larger than the limit")
)

// Conditions a board reports; an *Error matches them with errors.Is.
var (
	ErrNotSupported = errors.New("not supported by the board")
	ErrNotFound     = errors.New("not found on the board")
	ErrBusy         = errors.New("board busy")
	ErrBadState     = errors.New("board in the wrong state")
	ErrInvalid      = errors.New("board refused the request as invalid")
	ErrNoSpace      = errors.New("board out of space")
	ErrMismatch     = errors.New("board reports a mismatch")
)

// RC is an SMP result code of the version 1 protocol (MGMT_ERR_*).
type RC int

// SMP result codes (Zephyr include/zephyr/mgmt/mcumgr/mgmt/mgmt_defines.h).
const (
	RCOK            RC = 0
	RCUnknown       RC = 1
	RCNoMem         RC = 2
	RCInvalid       RC = 3
	RCTimeout       RC = 4
	RCNoEntry       RC = 5
	RCBadState      RC = 6
	RCMsgSize       RC = 7
	RCNotSupported  RC = 8
	RCCorrupt       RC = 9
	RCBusy          RC = 10
	RCAccessDenied  RC = 11
	RCTooOld        RC = 12
	RCTooNew        RC = 13
	RCPerUserOffset RC = 256
)

var rcNames = map[RC]string{
	RCOK: "ok", RCUnknown: "unknown error", RCNoMem: "out of memory",
	RCInvalid: "invalid argument", RCTimeout: "timeout", RCNoEntry: "no such entry",
	RCBadState: "bad state", RCMsgSize: "message too large", RCNotSupported: "not supported",
	RCCorrupt: "corrupt", RCBusy: "busy", RCAccessDenied: "access denied",
	RCTooOld: "protocol version too old", RCTooNew: "protocol version too new",
}

func (rc RC) String() string {
	if n, ok := rcNames[rc]; ok {
		return n
	}
	return fmt.Sprintf("rc %d", int(rc))
}

// Group result codes (SMP version 2, err{group,rc}) that zerotouch
// interprets. Values are those of Zephyr's img_mgmt, fs_mgmt and our
// provisioning group.
const (
	// Image group (enum img_mgmt_err_code_t).
	ImgRCNoImage          = 3
	ImgRCNoFreeSlot       = 9
	ImgRCFlashWriteFailed = 12
	ImgRCInvalidOffset    = 20
	ImgRCInvalidLength    = 21
	ImgRCInvalidHeader    = 22
	ImgRCBadHeaderMagic   = 23
	ImgRCInvalidHash      = 24
	ImgRCTooLarge         = 30
	ImgRCDataOverrun      = 31
	// File system group (enum fs_mgmt_err_code_t).
	FSRCFileInvalidName  = 2 // FS_MGMT_ERR_FILE_INVALID_NAME
	FSRCFileNotFound     = 3 // FS_MGMT_ERR_FILE_NOT_FOUND
	FSRCFileIsDirectory  = 4
	FSRCFileOpenFailed   = 5
	FSRCFileSeekFailed   = 6
	FSRCFileReadFailed   = 7
	FSRCFileTruncFailed  = 8
	FSRCFileDeleteFailed = 9
	FSRCFileWriteFailed  = 10
	FSRCFileOffset       = 11 // FS_MGMT_ERR_FILE_OFFSET_NOT_VALID
	FSRCFileOffsetLarger = 12
	FSRCChecksumNotFound = 13 // FS_MGMT_ERR_CHECKSUM_HASH_NOT_FOUND
	FSRCMountNotFound    = 14 // FS_MGMT_ERR_MOUNT_POINT_NOT_FOUND
	FSRCFileEmpty        = 16
	// Provisioning group (ours; see board's package documentation).
	ProvRCUnknown        = 1
	ProvRCNoConfig       = 2 // commit: the config file is missing
	ProvRCConfigMismatch = 3 // commit: the config's sha256 differs
	ProvRCNoTPM          = 4 // tpm: the board has no TPM
	ProvRCTPMFailed      = 5 // tpm: the TPM did not answer
	ProvRCBadAlgorithm   = 6 // keygen: algorithm not supported
	ProvRCBadCN          = 7 // keygen: CN empty or too long
)

// Error is an error answered by the board: an SMP result code (version 1,
// {"rc": n}) or a group result code (version 2, {"err": {"group", "rc"}}).
type Error struct {
	Command string // the command that failed, as "fs.file"
	RC      RC     // version 1 result code; 0 when Group is set
	// Group and GroupRC carry a version 2 group error. GroupRC is zero
	// for a version 1 error.
	Group   uint16
	GroupRC int
}

func (e *Error) Error() string {
	if e.GroupRC != 0 {
		return fmt.Sprintf("%s: board error %d of group %d%s", e.Command, e.GroupRC, e.Group, groupRCText(e.Group, e.GroupRC))
	}
	return fmt.Sprintf("%s: board answered rc=%d (%s)", e.Command, int(e.RC), e.RC)
}

func groupRCText(group uint16, rc int) string {
	switch {
	case group == GroupImage && rc == ImgRCNoImage:
		return " (no such image)"
	case group == GroupImage && rc == ImgRCNoFreeSlot:
		return " (no free slot: an image is already pending; reset the board or erase the slot)"
	case group == GroupImage && rc == ImgRCFlashWriteFailed:
		return " (flash write failed)"
	case group == GroupImage && (rc == ImgRCInvalidLength || rc == ImgRCInvalidOffset):
		return " (upload length or offset refused)"
	case group == GroupImage && (rc == ImgRCInvalidHeader || rc == ImgRCBadHeaderMagic):
		return " (not an MCUboot image)"
	case group == GroupImage && rc == ImgRCInvalidHash:
		return " (image hash refused)"
	case group == GroupImage && rc == ImgRCTooLarge:
		return " (image larger than the slot)"
	case group == GroupFS && rc == FSRCFileNotFound:
		return " (file not found)"
	case group == GroupFS && rc == FSRCFileOffset:
		return " (offset not valid)"
	case group == GroupFS && rc == FSRCFileWriteFailed:
		return " (write failed: file system full, or its flash failed)"
	case group == GroupFS && rc == FSRCFileOpenFailed:
		return " (file cannot be opened: does its folder exist?)"
	case group == GroupFS && rc == FSRCMountNotFound:
		return " (no file system mounted there)"
	case group == GroupProvisioning && rc == ProvRCNoConfig:
		return " (no config stored)"
	case group == GroupProvisioning && rc == ProvRCConfigMismatch:
		return " (stored config does not match the hash)"
	case group == GroupProvisioning && rc == ProvRCNoTPM:
		return " (board has no TPM)"
	case group == GroupProvisioning && rc == ProvRCTPMFailed:
		return " (board's TPM failed)"
	case group == GroupProvisioning && rc == ProvRCBadAlgorithm:
		return " (key algorithm not supported)"
	case group == GroupProvisioning && rc == ProvRCBadCN:
		return " (common name refused)"
	}
	return ""
}

// Is matches the package's board conditions.
func (e *Error) Is(target error) bool {
	if e.GroupRC != 0 {
		return groupIs(e.Group, e.GroupRC, target)
	}
	switch e.RC {
	case RCNotSupported, RCUnknown:
		return target == ErrNotSupported && e.RC == RCNotSupported
	case RCNoEntry:
		return target == ErrNotFound
	case RCBusy:
		return target == ErrBusy
	case RCBadState:
		return target == ErrBadState
	case RCInvalid, RCMsgSize:
		return target == ErrInvalid
	case RCNoMem:
		return target == ErrNoSpace
	}
	return false
}

func groupIs(group uint16, rc int, target error) bool {
	switch group {
	case GroupImage:
		switch rc {
		case ImgRCNoImage:
			return target == ErrNotFound
		case ImgRCNoFreeSlot:
			return target == ErrBadState
		case ImgRCInvalidOffset, ImgRCInvalidLength, ImgRCInvalidHeader, ImgRCBadHeaderMagic, ImgRCInvalidHash, ImgRCDataOverrun:
			return target == ErrInvalid
		case ImgRCTooLarge:
			return target == ErrNoSpace
		}
	case GroupFS:
		switch rc {
		case FSRCFileNotFound, FSRCMountNotFound:
			return target == ErrNotFound
		case FSRCFileInvalidName, FSRCFileIsDirectory:
			return target == ErrInvalid
		case FSRCChecksumNotFound:
			return target == ErrNotSupported
		}
	case GroupProvisioning:
		switch rc {
		case ProvRCNoConfig:
			return target == ErrNotFound
		case ProvRCConfigMismatch:
			return target == ErrMismatch
		case ProvRCNoTPM, ProvRCBadAlgorithm:
			return target == ErrNotSupported
		case ProvRCBadCN:
			return target == ErrInvalid
		}
	}
	return false
}

// responseStatus is the part of every response body that reports errors.
type responseStatus struct {
	RC  *int `cbor:"rc,omitempty"`
	Err *struct {
		Group uint16 `cbor:"group"`
		RC    int    `cbor:"rc"`
	} `cbor:"err,omitempty"`
}

// statusError returns the board's error in body, or nil.
func statusError(cmd string, body []byte) error {
	var st responseStatus
	if err := DecodeBody(body, &st); err != nil {
		return fmt.Errorf("%s: %w: body is not a CBOR map: %v", cmd, ErrProtocol, err)
	}
	if st.Err != nil && st.Err.RC != 0 {
		return &Error{Command: cmd, Group: st.Err.Group, GroupRC: st.Err.RC}
	}
	if st.RC != nil && *st.RC != 0 {
		return &Error{Command: cmd, RC: RC(*st.RC)}
	}
	return nil
}
