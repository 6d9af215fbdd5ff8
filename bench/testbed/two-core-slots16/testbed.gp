set terminal pngcairo size 900,560
set key top left
set grid
set xlabel 'offered load (queries/s)'
set output 'bench/testbed/two-core-slots16/latency.png'
set ylabel 'latency (ms)'
plot 'bench/testbed/two-core-slots16/testbed.dat' index 0 using 2:4 with linespoints title 'sketch p50', 'bench/testbed/two-core-slots16/testbed.dat' index 0 using 2:5 with linespoints title 'sketch p99'
set output 'bench/testbed/two-core-slots16/throughput.png'
set ylabel 'completed queries/s'
plot 'bench/testbed/two-core-slots16/testbed.dat' index 0 using 2:3 with linespoints title 'sketch'
set output 'bench/testbed/two-core-slots16/first_content.png'
set ylabel 'time to first answer content, p50 (ms)'
plot 'bench/testbed/two-core-slots16/testbed.dat' index 0 using 2:6 with linespoints title 'sketch'
