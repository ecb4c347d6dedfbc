package board

import (
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"zerotouch/flasher"
)

// A stock board (Config.Profile ProfileStock) has no provisioning group:
// nothing commits its configuration and no command asks it to register.
// Its firmware reads the configuration at boot and registers with DPS,
// which the virtual board does with Config.RegisterAtBoot, writing how it
// went to Config.RegistrationPath for the station to read through fs_mgmt.
// In mode x509-station-key the configuration's key URI names the key file
// the station wrote (file:///lfs1/zerotouch.key): the board takes that key
// into RAM at boot, as its firmware would load it.

// bootRegisterLocked starts, on a stock board with RegisterAtBoot, the
// registration its firmware makes at a boot that ends at bootAt. b.mu is
// held.
func (b *Board) bootRegisterLocked(bootAt time.Time) {
	if !b.stock() || !b.cfg.RegisterAtBoot || b.stopped {
		return
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		if !sleepUntil(bootAt, b.stop) {
			return
		}
		b.bootRegister()
	}()
}

// bootRegister registers from the configuration at Config.ConfigPath, if
// there is one, and writes the outcome to Config.RegistrationPath.
func (b *Board) bootRegister() {
	p, err := b.fsPath(b.cfg.ConfigPath)
	if err != nil {
		b.log.Warn("boot: configuration path", "err", err)
		return
	}
	data, err := os.ReadFile(p)
	if err != nil {
		b.log.Info("boot: no configuration: not registering", "path", b.cfg.ConfigPath)
		return
	}
	b.writeRegistration(flasher.Registration{State: flasher.RegRegistering})
	if bc, err := parseBootConfig(data); err == nil && bc.Attestation == attX509 {
		if err := b.loadStationKey(bc.KeyURI); err != nil {
			b.log.Warn("boot: device key", "err", err)
		}
	}
	b.mu.Lock()
	b.st.ConfigPath = b.cfg.ConfigPath
	b.mu.Unlock()
	b.writeRegistration(b.registerAndKeep())
}

// writeRegistration writes r to Config.RegistrationPath, as the firmware
// would for the station to read.
func (b *Board) writeRegistration(r flasher.Registration) {
	p, err := b.fsPath(b.cfg.RegistrationPath)
	if err != nil {
		b.log.Warn("boot: registration path", "err", err)
		return
	}
	data, _ := json.Marshal(r)
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.writeFile(p, data); err != nil {
		b.log.Warn("boot: write the registration's outcome", "path", b.cfg.RegistrationPath, "err", err)
	}
}

// loadStationKey takes into RAM the device key in the board's file that
// keyURI names (file:///lfs1/...), PEM PKCS #8 or SEC 1: the key a station
// made in mode x509-station-key. A key URI that names no file is left
// alone (the key is elsewhere).
func (b *Board) loadStationKey(keyURI string) error {
	u, err := url.Parse(keyURI)
	if err != nil || u.Scheme != "file" {
		return nil
	}
	name := u.Path
	if !strings.HasPrefix(name, "/") {
		return fmt.Errorf("key URI %q: want file:///PATH", keyURI)
	}
	p, err := b.fsPath(name)
	if err != nil {
		return fmt.Errorf("key file %s: %w", name, err)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("read the key file the configuration names: %w", err)
	}
	blk, _ := pem.Decode(data)
	clear(data)
	if blk == nil {
		return fmt.Errorf("key file %s holds no PEM block", name)
	}
	defer clear(blk.Bytes)
	var key any
	switch blk.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(blk.Bytes)
	default:
		err = fmt.Errorf("PEM block %q, want PRIVATE KEY", blk.Type)
	}
	if err != nil {
		return fmt.Errorf("key file %s: %w", name, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return errors.New("key file " + name + " holds no signing key")
	}
	b.mu.Lock()
	b.keys["station"] = s
	b.mu.Unlock()
	return nil
}
