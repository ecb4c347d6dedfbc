// Package board is the virtual board: the board's side of zerotouch's
// link, served on a pseudo-terminal exactly as a board running MCUmgr
// serves it on a USB serial port. The demo and the tests provision it, and
// firmware authors can read it as the reference for the provisioning group.
//
// A Board speaks SMP over the serial framing with flasher's codec, holds
// both directions of the line to its baud rate (10 bits a byte), keeps its
// flash in a directory (files, two image slots, its state), and backs its
// TPM with the go-tpm-tools simulator, swtpm over TCP or a TPM device. It
// can be made to fail on purpose (Faults).
//
// # Groups served
//
// OS (0): echo, reset, MCUmgr parameters, info. Image (1): state read and
// write, upload (resumable by sha256, as Zephyr's img_mgmt), erase; a
// pending image is swapped in at reset and reverts unless confirmed. File
// system (8): upload, download, status, sha256 and crc32 hashes.
//
// # The stock profile
//
// With Config.Profile ProfileStock the board is one that runs stock
// MCUmgr, as Zephyr's smp_svr sample: the os, image and fs groups only
// (every other group answers rc 8, not supported), the fs hash command
// only unless Config.NoFSHash, its file system littlefs-like: mounted at
// flasher.StockMount (a path elsewhere is fs error 14, mount point not
// found), no folders made on a write (fs error 5), writes past
// Config.FSSize failing as a full littlefs (fs error 10), a resent
// request carried out again. It has no TPM. With Config.RegisterAtBoot it
// registers with DPS at every boot whose configuration is there, as its
// firmware would, taking the key the configuration's key URI names
// (file:///lfs1/...) when the station made it (x509-station-key), and
// writes how it went to Config.RegistrationPath.
//
// # The provisioning group (64)
//
// The one group a firmware team adds to stock MCUmgr:
//
//	0 identity (read)  {} -> {serial, model, hw, fw, caps: [tpm, keygen, fs, image]}
//	1 tpm (write)      {cmd: bytes} -> {rsp: bytes}  one raw TPM 2.0 command
//	2 keygen (write)   {alg: "ecdsa-p256"|"rsa-2048", cn: text} -> {csr: bytes (DER)}
//	3 commit (write)   {config_sha256: bytes, path?: text} -> {}
//	4 register (write) {} -> {}  register with DPS now, as at first boot
//	5 registration (read) {} -> {state, registration_id, hub, device_id,
//	                   substatus, status, code, error}
//
// Group result codes (err.rc in SMP version 2): 2 no configuration stored,
// 3 stored configuration does not match config_sha256, 4 no TPM, 5 the TPM
// failed, 6 key algorithm not supported, 7 common name empty or over 64
// bytes. Version 1 requests get the nearest MGMT_ERR code instead.
//
// Commit hashes the file at path (or the board's configured default) and,
// only if it matches, marks the board provisioned; rewriting that file
// later clears the mark. A request that repeats the previous request byte
// for byte (same sequence number: the station resending after a lost
// answer) is answered again from the board's last answer, not executed
// twice, so a resent TPM command or keygen is harmless.
//
// Register reads the committed configuration, the output of any built-in
// template (json, aziot-toml, c-header, esp-idf-nvs-csv, told apart by
// content; the certificate chain inline or from the file it names), and
// registers with DPS over HTTPS as the device SDK does at first boot: the
// TPM answering DPS's challenge (package tpm), the certificate the station
// wrote with the key keygen made or the TPM key, or the derived symmetric
// key; it trusts Config.DPSRoots. It answers at once and registers in the
// background; registration reports none, registering, assigned (with the
// hub and device ID), disabled or failed (with DPS's HTTP status, error
// code and message). Register with no committed configuration is group
// code 2.
package board
