package tpm_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"zerotouch/board"
	"zerotouch/internal/regid"
	"zerotouch/tpm"
)

// checkCSR parses a CSR and checks its signature, subject and key.
func checkCSR(t *testing.T, der []byte, cn string, pub crypto.PublicKey) {
	t.Helper()
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatalf("parse CSR: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Errorf("CSR signature: %v", err)
	}
	if csr.Subject.CommonName != cn || len(csr.Subject.Names) != 1 {
		t.Errorf("CSR subject = %v, want only CN=%s", csr.Subject, cn)
	}
	if k, ok := csr.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(pub) {
		t.Errorf("CSR key is not the signer's")
	}
}

func TestSigningKey(t *testing.T) {
	for i, alg := range []tpm.KeyAlg{tpm.ECDSAP256, tpm.RSA2048} {
		t.Run(string(alg), func(t *testing.T) {
			sim := newSim(t, int64(10+i))
			d := tpm.New(sim, tpm.Options{Board: "ZT46"})
			ctx := testCtx(t)
			s, err := d.SigningKey(ctx, alg, tpm.DefaultKeyHandle)
			if err != nil {
				t.Fatal(err)
			}
			if !s.Key().Created {
				t.Errorf("a fresh TPM's key was not created")
			}
			switch s.Public().(type) {
			case *ecdsa.PublicKey:
				if alg != tpm.ECDSAP256 {
					t.Errorf("key is ECDSA, want %s", alg)
				}
			case *rsa.PublicKey:
				if alg != tpm.RSA2048 || s.Public().(*rsa.PublicKey).N.BitLen() != 2048 {
					t.Errorf("key is RSA, want %s", alg)
				}
			}
			handles := persistentHandles(t, sim)
			if !slices.Equal(handles, []tpm2.TPMHandle{tpm.SRKHandle, tpm.DefaultKeyHandle}) {
				t.Errorf("persistent handles = %v, want the SRK and the key", handles)
			}

			const id = "zt-board-000046"
			csr, err := tpm.CSR(s, id)
			if err != nil {
				t.Fatal(err)
			}
			checkCSR(t, csr, id, s.Public())

			checkNonExportable(t, sim, tpm.DefaultKeyHandle)

			again, err := tpm.New(sim, tpm.Options{}).SigningKey(ctx, alg, tpm.DefaultKeyHandle)
			if err != nil || again.Key().Created {
				t.Fatalf("second SigningKey = created %v, %v; want the persisted key", again != nil && again.Key().Created, err)
			}
			if !again.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(s.Public()) {
				t.Errorf("second SigningKey returned another key")
			}
			if h := persistentHandles(t, sim); !slices.Equal(h, handles) {
				t.Errorf("persistent handles after a second call = %v, want %v", h, handles)
			}

			other := tpm.RSA2048
			if alg == tpm.RSA2048 {
				other = tpm.ECDSAP256
			}
			if _, err := d.SigningKey(ctx, other, tpm.DefaultKeyHandle); !errors.Is(err, tpm.ErrHandleInUse) {
				t.Errorf("SigningKey(%s) over a %s key = %v, want ErrHandleInUse", other, alg, err)
			}
			for _, h := range []tpm2.TPMHandle{tpm.EKHandle, tpm.SRKHandle, 0x81000100, 0x81800001, 0x01C00002} {
				if _, err := d.SigningKey(ctx, alg, h); !errors.Is(err, tpm.ErrHandleInUse) {
					t.Errorf("SigningKey at %#x = %v, want ErrHandleInUse", uint32(h), err)
				}
			}
			if h := persistentHandles(t, sim); !slices.Equal(h, handles) {
				t.Errorf("persistent handles after refused handles = %v, want %v", h, handles)
			}
		})
	}
}

// checkNonExportable checks the key's attributes and that the TPM refuses
// to duplicate it.
func checkNonExportable(t *testing.T, tr transport.TPM, h tpm2.TPMHandle) {
	t.Helper()
	rp, err := tpm2.ReadPublic{ObjectHandle: h}.Execute(tr)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := rp.OutPublic.Contents()
	if err != nil {
		t.Fatal(err)
	}
	a := pub.ObjectAttributes
	if !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin || a.Decrypt || a.Restricted {
		t.Errorf("key attributes %+v: want fixedTPM, fixedParent, sensitiveDataOrigin, an unrestricted signing key", a)
	}
	_, err = tpm2.Duplicate{
		ObjectHandle:    tpm2.AuthHandle{Handle: h, Name: rp.Name, Auth: tpm2.PasswordAuth(nil)},
		NewParentHandle: tpm2.TPMRHNull,
		Symmetric:       tpm2.TPMTSymDef{Algorithm: tpm2.TPMAlgNull},
	}.Execute(tr)
	if err == nil {
		t.Errorf("the TPM duplicated the key")
	}
}

func TestSigningKeyErrors(t *testing.T) {
	sim := newSim(t, 12)
	d := tpm.New(sim, tpm.Options{})
	ctx := testCtx(t)
	if _, err := d.LoadSigner(ctx, tpm.DefaultKeyHandle); !errors.Is(err, tpm.ErrNoKey) {
		t.Errorf("LoadSigner on an empty handle = %v, want ErrNoKey", err)
	}
	if _, err := d.EK(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := d.LoadSigner(ctx, tpm.EKHandle); !errors.Is(err, tpm.ErrHandleInUse) || strings.Contains(err.Error(), "evictcontrol") {
		t.Errorf("LoadSigner at the EK's handle = %v, want ErrHandleInUse, and no advice to remove the EK", err)
	}
	if _, err := d.SigningKey(ctx, "dsa-1024", tpm.DefaultKeyHandle); err == nil {
		t.Errorf("SigningKey(dsa-1024) succeeded")
	}
	if _, err := tpm.ParseKeyAlg("ECDSA-P256"); err != nil {
		t.Errorf("ParseKeyAlg(ECDSA-P256) = %v", err)
	}
	if _, err := tpm.ParseKeyAlg("ed25519"); err == nil {
		t.Errorf("ParseKeyAlg(ed25519) succeeded")
	}
	s, err := d.SigningKey(ctx, tpm.ECDSAP256, tpm.DefaultKeyHandle)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tpm.CSR(s, strings.Repeat("x", 65)); !errors.Is(err, regid.ErrInvalid) {
		t.Errorf("CSR with a 65-character ID = %v, want regid.ErrInvalid", err)
	}
	sum := sha1.Sum([]byte("x"))
	if _, err := s.Sign(nil, sum[:], crypto.SHA1); err == nil {
		t.Errorf("Sign with SHA-1 succeeded")
	}
	if _, err := s.Sign(nil, sum[:], crypto.SHA256); err == nil {
		t.Errorf("Sign with a digest of the wrong size succeeded")
	}
}

// TestSignerAfterReboot makes the key through a board, reboots the board
// (which power-cycles its TPM) and signs again with a new connection.
func TestSignerAfterReboot(t *testing.T) {
	tb := newTestBoard(t, board.Config{Serial: "ZTK000001", BootTime: 50 * time.Millisecond}, testBaud)
	ctx := testCtx(t)
	s, err := tpm.New(tb.c.TPM(ctx), tpm.Options{Board: tb.cfg.Serial}).SigningKey(ctx, tpm.ECDSAP256, tpm.DefaultKeyHandle)
	if err != nil {
		t.Fatal(err)
	}
	if err := tb.c.Reset(ctx, false); err != nil {
		t.Fatal(err)
	}
	if err := tb.c.WaitReady(ctx, 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	tb.c.Close()
	c := tb.connect(t)
	s2, err := tpm.New(c.TPM(ctx), tpm.Options{Board: tb.cfg.Serial}).LoadSigner(ctx, tpm.DefaultKeyHandle)
	if err != nil {
		t.Fatalf("LoadSigner after reboot: %v", err)
	}
	if !s2.Public().(*ecdsa.PublicKey).Equal(s.Public()) {
		t.Fatalf("the key after reboot is another key")
	}
	csr, err := tpm.CSR(s2, "zt-after-reboot")
	if err != nil {
		t.Fatal(err)
	}
	checkCSR(t, csr, "zt-after-reboot", s.Public())
}

// TestLockout puts the board's TPM into dictionary-attack lockout the way
// it happens in the field (a wrong password) and checks what still works.
func TestLockout(t *testing.T) {
	tb := newTestBoard(t, board.Config{Serial: "ZTD000001"}, testBaud)
	ctx := testCtx(t)
	tr := tb.c.TPM(ctx)
	d := tpm.New(tr, tpm.Options{Board: tb.cfg.Serial})
	s, err := d.SigningKey(ctx, tpm.ECDSAP256, tpm.DefaultKeyHandle)
	if err != nil {
		t.Fatal(err)
	}
	setDAParameters(t, tr, 1, 3600, 3600)
	sum := make([]byte, 32)
	_, err = tpm2.Sign{
		KeyHandle:  tpm2.AuthHandle{Handle: tpm.DefaultKeyHandle, Name: tpm2.TPM2BName{Buffer: s.Key().Name}, Auth: tpm2.PasswordAuth([]byte("wrong"))},
		Digest:     tpm2.TPM2BDigest{Buffer: sum},
		InScheme:   tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgECDSA, Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: tpm2.TPMAlgSHA256})},
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
	}.Execute(tr)
	if !errors.Is(err, tpm2.TPMRCAuthFail) {
		t.Fatalf("sign with a wrong password = %v, want TPM_RC_AUTH_FAIL", err)
	}

	_, err = tpm.CSR(s, "zt-lockout")
	var te *tpm.Error
	if !errors.Is(err, tpm.ErrLockout) || !errors.As(err, &te) || te.Board != "ZTD000001" || !strings.HasPrefix(te.Step, "sign") {
		t.Fatalf("CSR in lockout = %v, want ErrLockout naming the board and the signing step", err)
	}
	t.Log(err)
	// The identity is not protected by the lockout: it still reads.
	if _, err := d.EK(ctx); err != nil {
		t.Errorf("EK in lockout: %v", err)
	}
}

// setDAParameters runs TPM2_DictionaryAttackParameters (Part 3, 25.3),
// which go-tpm's tpm2 package does not have, with the lockout hierarchy's
// empty password.
func setDAParameters(t *testing.T, tr transport.TPM, maxTries, recovery, lockoutRecovery uint32) {
	t.Helper()
	cmd := binary.BigEndian.AppendUint16(nil, uint16(tpm2.TPMSTSessions))
	cmd = binary.BigEndian.AppendUint32(cmd, 0) // size, below
	cmd = binary.BigEndian.AppendUint32(cmd, uint32(tpm2.TPMCCDictionaryAttackParameters))
	cmd = binary.BigEndian.AppendUint32(cmd, uint32(tpm2.TPMRHLockout))
	cmd = binary.BigEndian.AppendUint32(cmd, 9) // one password session:
	cmd = binary.BigEndian.AppendUint32(cmd, uint32(tpm2.TPMRSPW))
	cmd = append(cmd, 0, 0, 0, 0, 0) // no nonce, no attributes, empty password
	for _, v := range []uint32{maxTries, recovery, lockoutRecovery} {
		cmd = binary.BigEndian.AppendUint32(cmd, v)
	}
	binary.BigEndian.PutUint32(cmd[2:], uint32(len(cmd)))
	rsp, err := tr.Send(cmd)
	if err != nil {
		t.Fatalf("DictionaryAttackParameters: %v", err)
	}
	if rc := binary.BigEndian.Uint32(rsp[6:]); rc != 0 {
		t.Fatalf("DictionaryAttackParameters: %v", tpm2.TPMRC(rc))
	}
}
