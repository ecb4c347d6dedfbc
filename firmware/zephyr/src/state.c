/*
 * The provisioning group's state across resets: one small text file,
 * replaced by rename so that a reset leaves either the old or the new one.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <zephyr/fs/fs.h>
#include <zephyr/kernel.h>
#include <zephyr/logging/log.h>
#include <zephyr/sys/util.h>

#if defined(CONFIG_MBEDTLS_PSA_CRYPTO_C)
#include <psa/crypto.h>
#elif defined(CONFIG_TINYCRYPT_SHA256)
#include <tinycrypt/sha256.h>
#include <tinycrypt/constants.h>
#else
#error "zerotouch provisioning needs SHA-256: CONFIG_MBEDTLS_PSA_CRYPTO_C or CONFIG_TINYCRYPT_SHA256"
#endif

#include "internal.h"

LOG_MODULE_DECLARE(zerotouch_prov, CONFIG_ZEROTOUCH_PROV_LOG_LEVEL);

K_MUTEX_DEFINE(zt_lock);

static struct zt_state state;
static bool loaded;

static int hexval(char c)
{
	if (c >= '0' && c <= '9') {
		return c - '0';
	}
	if (c >= 'a' && c <= 'f') {
		return c - 'a' + 10;
	}
	return -1;
}

static bool unhex(const char *s, uint8_t *out, size_t n)
{
	if (strlen(s) != 2 * n) {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);

		if (hi < 0 || lo < 0) {
			return false;
		}
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

static void tohex(const uint8_t *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0xf];
	}
	out[2 * n] = '\0';
}

static uint8_t slot(const char *v)
{
	return (strcmp(v, "0") == 0) ? 0 : (strcmp(v, "1") == 0) ? 1 : ZT_NO_SLOT;
}

/* parse reads "key=value" lines; unknown keys are skipped, so that a later
 * version's file still loads.
 */
static void parse(char *text)
{
	char *save = NULL;
	uint8_t cn[ZT_CN_MAX];

	for (char *line = strtok_r(text, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		char *v = strchr(line, '=');

		if (v == NULL) {
			continue;
		}
		*v++ = '\0';
		if (strcmp(line, "provisioned") == 0) {
			state.provisioned = strcmp(v, "1") == 0;
		} else if (strcmp(line, "config_sha256") == 0) {
			if (!unhex(v, state.config_sha256, sizeof(state.config_sha256))) {
				state.provisioned = false;
			}
		} else if (strcmp(line, "config_path") == 0) {
			strncpy(state.config_path, v, sizeof(state.config_path) - 1);
		} else if (strcmp(line, "committed_key") == 0) {
			state.committed_key = slot(v);
		} else if (strcmp(line, "pending_key") == 0) {
			state.pending_key = slot(v);
		} else if (strcmp(line, "pending_cn") == 0) {
			/* hex, so that any bytes of a CN survive */
			size_t n = strlen(v) / 2;

			if (n <= ZT_CN_MAX && unhex(v, cn, n)) {
				memcpy(state.pending_cn, cn, n);
				state.pending_cn[n] = '\0';
			}
		}
	}
}

/* make_config_dir makes the folder of the default configuration file
 * (one level below the mount point), so that the station can write it:
 * MCUmgr's file system group makes no folders.
 */
static void make_config_dir(void)
{
	char dir[sizeof(CONFIG_ZEROTOUCH_PROV_CONFIG_PATH)];
	struct fs_dirent ent;
	char *slash;
	int rc;

	strcpy(dir, CONFIG_ZEROTOUCH_PROV_CONFIG_PATH);
	slash = strrchr(dir, '/');
	if (slash == NULL || slash == dir) {
		return;
	}
	*slash = '\0';
	if (strchr(dir + 1, '/') == NULL || fs_stat(dir, &ent) == 0) {
		return; /* the mount point itself, or there already */
	}
	rc = fs_mkdir(dir);
	if (rc != 0) {
		LOG_WRN("mkdir %s: %d", dir, rc);
	}
}

static void load(void)
{
	static char text[512 + 2 * CONFIG_ZEROTOUCH_PROV_PATH_MAX];
	struct fs_dirent ent;
	struct fs_file_t f;
	ssize_t n;

	memset(&state, 0, sizeof(state));
	state.committed_key = ZT_NO_SLOT;
	state.pending_key = ZT_NO_SLOT;
	make_config_dir();
	zt_remove_stale(CONFIG_ZEROTOUCH_PROV_STATE_PATH ".new");
	fs_file_t_init(&f);
	if (fs_stat(CONFIG_ZEROTOUCH_PROV_STATE_PATH, &ent) != 0 ||
	    fs_open(&f, CONFIG_ZEROTOUCH_PROV_STATE_PATH, FS_O_READ) != 0) {
		LOG_INF("not provisioned");
		return; /* a new board */
	}
	n = fs_read(&f, text, sizeof(text) - 1);
	fs_close(&f);
	if (n < 0) {
		LOG_ERR("read %s: %d", CONFIG_ZEROTOUCH_PROV_STATE_PATH, (int)n);
		return;
	}
	text[n] = '\0';
	parse(text);
	if (state.provisioned) {
		/* A configuration changed other than through MCUmgr (by the
		 * application, or while a reset cut the state's update short)
		 * is no longer the committed one.
		 */
		uint8_t sum[32];

		if (zt_sha256_file(state.config_path, sum) != 0 ||
		    memcmp(sum, state.config_sha256, sizeof(sum)) != 0) {
			LOG_WRN("%s changed since its commit: not provisioned", state.config_path);
			state.provisioned = false;
			(void)zt_state_save();
		}
	}
	if (state.provisioned) {
		char sum[65];

		tohex(state.config_sha256, sizeof(state.config_sha256), sum);
		LOG_INF("provisioned: config %s sha256 %s", state.config_path, sum);
	} else {
		LOG_INF("not provisioned");
	}
#if defined(CONFIG_ZEROTOUCH_PROV_KEYGEN)
	zt_keys_loaded(&state);
#endif
}

void zt_state_forget(void)
{
	loaded = false;
}

struct zt_state *zt_state_get(void)
{
	if (!loaded) {
		load();
		loaded = true;
	}
	return &state;
}

void zt_remove_stale(const char *path)
{
	struct fs_dirent ent;

	if (fs_stat(path, &ent) == 0) {
		(void)fs_unlink(path);
	}
}

int zt_state_save(void)
{
	static char text[512 + 2 * CONFIG_ZEROTOUCH_PROV_PATH_MAX];
	static const char tmp[] = CONFIG_ZEROTOUCH_PROV_STATE_PATH ".new";
	char sum[65], cn[2 * ZT_CN_MAX + 1];
	struct fs_file_t f;
	int n, rc;

	tohex(state.config_sha256, sizeof(state.config_sha256), sum);
	tohex((const uint8_t *)state.pending_cn, strlen(state.pending_cn), cn);
	n = snprintf(text, sizeof(text),
		     "provisioned=%d\nconfig_sha256=%s\nconfig_path=%s\n"
		     "committed_key=%s\npending_key=%s\npending_cn=%s\n",
		     state.provisioned ? 1 : 0, sum, state.config_path,
		     state.committed_key == ZT_NO_SLOT ? "none" : state.committed_key ? "1" : "0",
		     state.pending_key == ZT_NO_SLOT ? "none" : state.pending_key ? "1" : "0", cn);
	if (n < 0 || n >= (int)sizeof(text)) {
		return -ENOMEM;
	}
	fs_file_t_init(&f);
	zt_remove_stale(tmp);
	rc = fs_open(&f, tmp, FS_O_CREATE | FS_O_WRITE);
	if (rc != 0) {
		return rc;
	}
	rc = fs_write(&f, text, n);
	if (rc == n) {
		rc = fs_sync(&f);
	} else if (rc >= 0) {
		rc = -ENOSPC;
	}
	fs_close(&f);
	if (rc == 0) {
		rc = fs_rename(tmp, CONFIG_ZEROTOUCH_PROV_STATE_PATH);
	}
	if (rc != 0) {
		LOG_ERR("write %s: %d", CONFIG_ZEROTOUCH_PROV_STATE_PATH, rc);
		(void)fs_unlink(tmp);
	}
	return rc;
}

int zt_sha256_file(const char *path, uint8_t out[32])
{
	static uint8_t buf[256];
	struct fs_dirent ent;
	struct fs_file_t f;
	ssize_t n;
	int rc;

	if (fs_stat(path, &ent) != 0) {
		return -ENOENT;
	}
	if (ent.type != FS_DIR_ENTRY_FILE) {
		return -EISDIR;
	}
	fs_file_t_init(&f);
	rc = fs_open(&f, path, FS_O_READ);
	if (rc != 0) {
		return rc;
	}
#if defined(CONFIG_MBEDTLS_PSA_CRYPTO_C)
	psa_hash_operation_t op = PSA_HASH_OPERATION_INIT;
	size_t len;

	if (psa_crypto_init() != PSA_SUCCESS || psa_hash_setup(&op, PSA_ALG_SHA_256) != PSA_SUCCESS) {
		fs_close(&f);
		return -EIO;
	}
	while ((n = fs_read(&f, buf, sizeof(buf))) > 0) {
		if (psa_hash_update(&op, buf, n) != PSA_SUCCESS) {
			n = -EIO;
			break;
		}
	}
	if (n == 0 && psa_hash_finish(&op, out, 32, &len) != PSA_SUCCESS) {
		n = -EIO;
	}
	if (n != 0) {
		psa_hash_abort(&op);
	}
#else
	struct tc_sha256_state_struct s;

	(void)tc_sha256_init(&s);
	while ((n = fs_read(&f, buf, sizeof(buf))) > 0) {
		(void)tc_sha256_update(&s, buf, n);
	}
	if (n == 0) {
		(void)tc_sha256_final(out, &s);
	}
#endif
	fs_close(&f);
	return n < 0 ? (int)n : 0;
}
