set terminal pngcairo size 900,560
set key top left
set grid
set xlabel 'offered load (queries/s)'
set output 'bench/sim/prediction/calibration_latency.png'
set ylabel 'latency (ms)'
plot 'bench/sim/prediction/calibration.dat' index 0 using 2:4 with linespoints title 'sketch testbed p50', 'bench/sim/prediction/calibration.dat' index 0 using 2:5 with linespoints title 'sketch testbed p99', 'bench/sim/prediction/calibration.dat' index 1 using 2:4 with linespoints title 'sketch sim p50', 'bench/sim/prediction/calibration.dat' index 1 using 2:5 with linespoints title 'sketch sim p99'
set output 'bench/sim/prediction/calibration_throughput.png'
set ylabel 'completed queries/s'
plot 'bench/sim/prediction/calibration.dat' index 0 using 2:3 with linespoints title 'sketch testbed', 'bench/sim/prediction/calibration.dat' index 1 using 2:3 with linespoints title 'sketch sim'
set output 'bench/sim/prediction/calibration_first_content.png'
set ylabel 'time to first answer content, p50 (ms)'
plot 'bench/sim/prediction/calibration.dat' index 0 using 2:6 with linespoints title 'sketch testbed', 'bench/sim/prediction/calibration.dat' index 1 using 2:6 with linespoints title 'sketch sim'
