package board

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"zerotouch/flasher"
)

func TestParseFaults(t *testing.T) {
	got, err := ParseFaults("drop-after=1000, drop-for=2s,corrupt-tx=1,corrupt-rx=2,delay=50ms,reset-after=7,no-replay=true,corrupt-write=2,tpm-garbage=3,rc=fs.file:3,rc=prov.tpm:5")
	if err != nil {
		t.Fatal(err)
	}
	want := Faults{
		DropAfter: 1000, DropFor: 2 * time.Second, CorruptTx: 1, CorruptRx: 2,
		Delay: 50 * time.Millisecond, ResetAfter: 7, NoReplay: true, CorruptWrite: 2, TPMGarbage: 3,
		RC: map[string]int{"fs.file": 3, "prov.tpm": 5},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseFaults (-want +got):\n%s", diff)
	}
	if f, err := ParseFaults(" "); err != nil || !cmp.Equal(f, Faults{}) {
		t.Errorf("ParseFaults(blank) = %+v, %v", f, err)
	}
	for _, bad := range []string{"drop-after", "drop-after=x", "delay=5", "rc=fs.file", "rc=fs.file:0", "rc=fs.file:x", "flood=1", "corrupt-tx="} {
		if _, err := ParseFaults(bad); err == nil {
			t.Errorf("ParseFaults(%q) accepted", bad)
		}
	}
}

// FuzzDispatch hands arbitrary messages to a board: it must not panic,
// and every answer it gives must be a well-formed answer to the request.
func FuzzDispatch(f *testing.F) {
	seed := func(op flasher.Op, group uint16, id uint8, body any) {
		msg, err := flasher.EncodeMessage(flasher.Header{Version: flasher.Version2, Op: op, Group: group, Seq: 1, ID: id}, body)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(msg)
	}
	seed(flasher.OpWrite, flasher.GroupOS, flasher.CmdOSEcho, map[string]string{"d": "x"})
	seed(flasher.OpRead, flasher.GroupOS, flasher.CmdOSParams, nil)
	seed(flasher.OpWrite, flasher.GroupFS, flasher.CmdFSFile, map[string]any{"name": "/lfs/a", "off": 0, "len": 3, "data": []byte("abc")})
	seed(flasher.OpRead, flasher.GroupFS, flasher.CmdFSFile, map[string]any{"name": "/lfs/a", "off": 0})
	seed(flasher.OpRead, flasher.GroupFS, flasher.CmdFSHash, map[string]any{"name": "/lfs/a", "type": "sha256"})
	seed(flasher.OpWrite, flasher.GroupImage, flasher.CmdImageUpload, map[string]any{"off": 0, "len": 100, "data": make([]byte, 40), "image": 0})
	seed(flasher.OpWrite, flasher.GroupProvisioning, flasher.CmdProvCommit, map[string]any{"config_sha256": make([]byte, 32)})
	seed(flasher.OpWrite, flasher.GroupProvisioning, flasher.CmdProvKeygen, map[string]any{"alg": "ecdsa-p256", "cn": "x"})

	b, err := Start(Config{Serial: "FUZZ", Dir: f.TempDir(), TPM: TPMNone, SlotSize: 64 << 10})
	if err != nil {
		f.Fatal(err)
	}
	defer b.Close()
	f.Fuzz(func(t *testing.T, msg []byte) {
		rsp, _ := b.dispatch(msg)
		req, err := flasher.ParseMessage(msg)
		if err != nil || req.Op.IsResponse() {
			if rsp != nil {
				t.Fatalf("answered a message that is not a request")
			}
			return
		}
		if rsp == nil {
			t.Fatalf("no answer to %s", req.Header)
		}
		got, err := flasher.ParseMessage(rsp)
		if err != nil {
			t.Fatalf("answer does not parse: %v", err)
		}
		if got.Op != req.Op.Response() || got.Seq != req.Seq || got.Group != req.Group || got.ID != req.ID {
			t.Fatalf("answer %+v does not match request %+v", got.Header, req.Header)
		}
		var body map[string]any
		if err := flasher.DecodeBody(got.Body, &body); err != nil {
			t.Fatalf("answer body is not a CBOR map: %v", err)
		}
	})
}
