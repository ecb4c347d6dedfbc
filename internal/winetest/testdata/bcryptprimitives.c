/*
 * bcryptprimitives.dll for Wine 8, which lacks it: Go's Windows runtime
 * loads it before main for ProcessPrng, its source of random bytes. This
 * one fills the buffer from bcrypt's system RNG. Test scaffolding only:
 * Windows 10 and later have the real DLL.
 */
#include <windows.h>
#include <bcrypt.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
	while (len > 0) {
		ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
		if (!BCRYPT_SUCCESS(BCryptGenRandom(NULL, data, n, BCRYPT_USE_SYSTEM_PREFERRED_RNG)))
			return FALSE;
		data += n;
		len -= n;
	}
	return TRUE;
}
