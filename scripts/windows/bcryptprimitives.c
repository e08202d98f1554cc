/*
 * bcryptprimitives.dll for Wine 8 (Debian 12), test prefixes only.
 *
 * Rust's std (1.78 and later) gets its randomness from ProcessPrng in
 * bcryptprimitives.dll, which Windows 10+ ships and Wine 8 does not: every Rust exe
 * then fails to load with STATUS_DLL_NOT_FOUND (c0000135). This DLL exports
 * ProcessPrng and forwards it to BCryptGenRandom with the system-preferred RNG,
 * which is what Windows' own ProcessPrng draws from. scripts/windows/setup.sh builds it
 * with mingw-w64 into the test Wine prefix; it is never shipped.
 */
#include <windows.h>
#include <bcrypt.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    /* BCryptGenRandom takes a ULONG length: feed large requests in chunks. */
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!BCRYPT_SUCCESS(BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG)))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    /* Windows documents ProcessPrng as always returning TRUE. */
    return TRUE;
}

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved)
{
    (void)instance;
    (void)reason;
    (void)reserved;
    return TRUE;
}
