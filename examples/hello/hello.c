/* hello: prints a greeting, its arguments and the Donjon/Enarx environment. */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    const char *who = getenv("GREETING_NAME");
    const char *count = getenv("FD_COUNT");
    const char *names = getenv("FD_NAMES");
    printf("hello from donjon, %s!\n", who ? who : "world");
    printf("argc=%d\n", argc);
    for (int i = 0; i < argc; i++) {
        printf("argv[%d]=%s\n", i, argv[i]);
    }
    printf("FD_COUNT=%s\n", count ? count : "(unset)");
    printf("FD_NAMES=%s\n", names ? names : "(unset)");
    const char *code = getenv("EXIT_CODE");
    return code ? atoi(code) : 0;
}
