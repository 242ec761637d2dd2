# cmake -DIN=file -DOUT=header -DNAME=symbol -P embed.cmake
# Writes `static const char NAME[] = {bytes..., 0};`: the file's text as a C string.
file(READ "${IN}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n    "
       bytes "${bytes}")
file(WRITE "${OUT}" "/* Generated from ${IN}; do not edit. */\nstatic const char ${NAME}[] = {\n    ${bytes}0x00};\n")
