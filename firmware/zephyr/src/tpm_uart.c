/*
 * A TPM reached over a UART, raw TPM 2.0 commands and responses with no
 * framing of their own (each response's header gives its length). On
 * native_sim the second UART is a pseudo-terminal that the host bridges
 * to swtpm's TCP server port, whose protocol is the same raw stream; the
 * test bed's only TPM. A production board registers its SPI or I2C TPM
 * driver with zerotouch_prov_set_tpm instead.
 */
#include <errno.h>

#include <zephyr/device.h>
#include <zephyr/drivers/uart.h>
#include <zephyr/init.h>
#include <zephyr/kernel.h>
#include <zephyr/logging/log.h>
#include <zephyr/sys/byteorder.h>

#include <zerotouch/prov.h>

LOG_MODULE_DECLARE(zerotouch_prov, CONFIG_ZEROTOUCH_PROV_LOG_LEVEL);

/* read_byte waits for one byte until deadline (a k_uptime_get value). */
static int read_byte(const struct device *uart, uint8_t *b, int64_t deadline)
{
	while (uart_poll_in(uart, b) != 0) {
		if (k_uptime_get() > deadline) {
			return -ETIMEDOUT;
		}
		k_sleep(K_MSEC(1));
	}
	return 0;
}

static int transceive(const struct zerotouch_tpm_transport *t, const uint8_t *cmd, size_t cmd_len,
		      uint8_t *rsp, size_t rsp_size, size_t *rsp_len)
{
	const struct device *uart = t->user_data;
	int64_t deadline;
	uint8_t b;
	size_t want = 10;
	int rc;

	/* Drop what a timed-out response left behind. */
	while (uart_poll_in(uart, &b) == 0) {
	}
	for (size_t i = 0; i < cmd_len; i++) {
		uart_poll_out(uart, cmd[i]);
	}
	deadline = k_uptime_get() + CONFIG_ZEROTOUCH_PROV_TPM_TIMEOUT_MS;
	for (size_t n = 0; n < want; n++) {
		rc = read_byte(uart, &b, deadline);
		if (rc != 0) {
			return rc;
		}
		if (n >= rsp_size) {
			return -ENOMEM;
		}
		rsp[n] = b;
		if (n == 5) {
			/* tag (2), responseSize (4): TPM 2.0 Part 1, 18.2 */
			want = sys_get_be32(rsp + 2);
			if (want < 10 || want > rsp_size) {
				return -EPROTO;
			}
		}
	}
	*rsp_len = want;
	return 0;
}

static struct zerotouch_tpm_transport uart_tpm = {
	.transceive = transceive,
};

static int tpm_uart_init(void)
{
	const struct device *uart = device_get_binding(CONFIG_ZEROTOUCH_PROV_TPM_UART_NAME);

	if (uart == NULL || !device_is_ready(uart)) {
		LOG_ERR("no TPM UART %s", CONFIG_ZEROTOUCH_PROV_TPM_UART_NAME);
		return 0;
	}
	uart_tpm.user_data = (void *)uart;
	zerotouch_prov_set_tpm(&uart_tpm);
	return 0;
}

SYS_INIT(tpm_uart_init, APPLICATION, CONFIG_APPLICATION_INIT_PRIORITY);
